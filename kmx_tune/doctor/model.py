"""The findings model: a check looks at a :class:`Context` (everything gathered once)
and yields :class:`Finding` s (ok / warn / fail, where the facts came from, the exact
command that fixes it); a :class:`Report` computes the exit status from them."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kmx_tune import keras_config
from kmx_tune.flavors import Recommendation
from kmx_tune.hardware import HardwareProfile
from kmx_tune.target import TargetInfo

SCHEMA = "kmx-tune/doctor/1"
OK, WARN, FAIL = "ok", "warn", "fail"
KERAS_MXNET = "keras-mxnet==2.2.4.3"


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


@dataclass(frozen=True)
class Context:
    """Everything a check may look at, gathered once."""

    target: TargetInfo
    hw: HardwareProfile
    rec: Recommendation
    keras_json: keras_config.KerasJsonState
    env: Mapping[str, str] = field(repr=False)

    @property
    def python(self) -> str:
        return self.target.python

    def pip(self, *args: str) -> str:
        return shlex.join([self.python, "-m", "pip", *args])

    def install_mxnet(self) -> str:
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

    def old_python_route(self) -> str:
        """keras-mxnet needs Python <= 3.9: a venv of its own with the right MXNet."""
        venv = "~/venvs/keras-mxnet"
        reqs = " ".join(shlex.quote(r) for r in (KERAS_MXNET, *self.rec.requirements))
        return (
            f"python3.9 -m venv {venv} && {venv}/bin/python -m pip install {reqs}"
            f" && kmx-tune doctor --python {venv}/bin/python"
        )


Check = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    target: TargetInfo
    hardware: HardwareProfile
    recommendation: Recommendation
    keras_json: str  # path of the keras.json Keras reads
    deep: bool = False
    strict: bool = False  # warnings fail too

    def count(self, status: str) -> int:
        return sum(1 for f in self.findings if f.status == status)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; 1 when a check failed (or warned, with strict)."""
        if self.count(FAIL) or (self.strict and self.count(WARN)):
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "python": self.target.python,
            "python_version": self.target.version_str,
            "deep": self.deep,
            "strict": self.strict,
            "exit_code": self.exit_code,
            "summary": {s: self.count(s) for s in (OK, WARN, FAIL)},
            "findings": [f.to_json() for f in self.findings],
            "recommendation": self.recommendation.to_json(),
            "hardware": {**self.hardware.to_json(), "source": self.hardware.source},
            "keras_json": self.keras_json,
            "target": self.target.to_json(),
        }
