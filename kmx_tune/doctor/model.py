"""The findings model: a check looks at a :class:`Context` (everything gathered once)
and yields :class:`Finding` s (ok / warn / fail, where the facts came from, the exact
command that fixes it); a :class:`Report` computes the exit status from them."""

from __future__ import annotations

import functools
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kmx_tune import keras_config
from kmx_tune.flavors import PY_NEWEST_KERAS_MXNET, Recommendation
from kmx_tune.hardware import HardwareProfile
from kmx_tune.target import TargetInfo

if TYPE_CHECKING:
    from kmx_tune.interpreters import Interpreter, Route

SCHEMA = "kmx-tune/doctor/1"
OK, WARN, FAIL = "ok", "warn", "fail"
KERAS_MXNET = "keras-mxnet==2.2.4.3"  # the last keras-mxnet release


@dataclass(frozen=True)
class Finding:
    id: str  # stable name, e.g. "numpy", "env.OMP_NUM_THREADS"
    status: str  # ok | warn | fail
    title: str  # one line: what is right or wrong
    detail: str  # where it came from: "detected: driver 535.104, compute capability 8.6"
    fix: str | None = None  # the exact command that fixes it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
        }


def find_keras_python() -> Interpreter | None:
    """The real finder (see :mod:`kmx_tune.interpreters`), imported when first used."""
    from kmx_tune.interpreters import find_keras_python

    return find_keras_python()


@dataclass(frozen=True)
class MachineContext:
    """What the checks of the machine look at (the hardware, keras.json, the
    environment variables): all a doctor run has when there is no target."""

    hw: HardwareProfile
    rec: Recommendation
    keras_json: keras_config.KerasJsonState
    env: Mapping[str, str] = field(repr=False)
    # how to find a Python for keras-mxnet (runs a candidate: only when advice needs it)
    find_keras_python: Callable[[], Interpreter | None] = field(repr=False, compare=False)

    @functools.cached_property
    def keras_python(self) -> Interpreter | None:
        """A Python 3.6-3.9 on this machine that can make a venv, found once."""
        return self.find_keras_python()

    @functools.cached_property
    def route(self) -> Route:
        """keras-mxnet needs Python <= 3.9: a venv of its own with the right MXNet, made
        with a Python found here (or the command that gets one)."""
        from kmx_tune.interpreters import keras_venv_route

        return keras_venv_route(self.keras_python, self.rec.requirements, self.env)

    def old_python_route(self) -> str:
        return self.route.fix


@dataclass(frozen=True)
class Context(MachineContext):
    """Everything a check may look at, gathered once."""

    target: TargetInfo

    @property
    def python(self) -> str:
        return self.target.python

    def pip(self, *args: str) -> str:
        return shlex.join([self.python, "-m", "pip", *args])

    @property
    def keras_mxnet_cannot_run(self) -> bool:
        """Python 3.10+ with nothing of Keras-MXNet installed: the environment to make
        is another one, so installing MXNet here would not help."""
        t = self.target
        return (
            self.py > PY_NEWEST_KERAS_MXNET
            and not t.mxnet_distributions
            and t.keras.module_path is None
        )

    def install_mxnet(self) -> str:
        if self.keras_mxnet_cannot_run:
            return self.old_python_route()
        cmd = ["kmx-tune", "install-mxnet", "--python", self.python]
        if self.hw.file:
            cmd += ["--hardware", self.hw.file]
        return shlex.join(cmd)

    @property
    def py(self) -> tuple[int, int]:
        return self.target.version[0], self.target.version[1]

    @property
    def py_str(self) -> str:
        return f"Python {self.py[0]}.{self.py[1]}"


Check = Callable[[Context], Iterable[Finding]]
MachineCheck = Callable[[MachineContext], Iterable[Finding]]


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    target: TargetInfo | None  # None: no environment to check (see passed_over)
    hardware: HardwareProfile
    recommendation: Recommendation
    keras_json: str  # path of the keras.json Keras reads
    deep: bool = False
    strict: bool = False  # warnings fail too
    chosen_by: str = "--python"  # why this target: "--python", "the active virtual ..."
    passed_over: tuple[str, ...] = ()  # defaults considered first (or all), and why not

    def count(self, status: str) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 1 when a check failed (or warned, with strict)."""
        if self.count(FAIL) or (self.strict and self.count(WARN)):
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        t = self.target
        return {
            "schema": SCHEMA,
            "python": None if t is None else t.python,
            "python_version": None if t is None else t.version_str,
            "chosen_by": None if t is None else self.chosen_by,
            "passed_over": list(self.passed_over),
            "deep": self.deep,
            "strict": self.strict,
            "exit_code": self.exit_code,
            "summary": {s: self.count(s) for s in (OK, WARN, FAIL)},
            "findings": [f.to_json() for f in self.findings],
            "recommendation": self.recommendation.to_json(),
            "hardware": {**self.hardware.to_json(), "source": self.hardware.source},
            "keras_json": self.keras_json,
            "target": None if t is None else t.to_json(),
        }
