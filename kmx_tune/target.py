"""The Python environment being tuned: one :class:`Target` object, used by every
command that takes ``--python``: its interpreter, its facts and its pip.

The target may be a different, older interpreter than the one running kmx-tune
(``--python PATH``), so nothing here imports from it: a stdlib-only script from
``kmx_tune/_in_target/`` runs inside it and reports back as JSON. Tests describe a
target with :class:`RecordedTarget` (facts as the script reports them), which runs
nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmx_tune.dists import Distribution, is_mxnet_distribution, normalize
from kmx_tune.errors import KmxError, TargetError
from kmx_tune.install.pip import PipRun, pip_list, run_pip

if TYPE_CHECKING:
    from typing import IO

IN_TARGET_DIR = Path(__file__).parent / "_in_target"


@dataclass(frozen=True)
class KerasFacts:
    module_path: str | None  # folder of the `keras` package that `import keras` finds
    has_mxnet_backend: bool  # keras/backend/mxnet_backend.py exists and is loaded (keras-mxnet)
    # mxnet_backend.py is there, loaded or not (plain keras over keras-mxnet leaves it)
    mxnet_backend_file: bool = False


@dataclass(frozen=True)
class RuntimeFacts:
    """What importing mxnet (and keras) really did; only with ``deep=True``."""

    mxnet_version: str | None
    mxnet_import_error: str | None
    features: Mapping[str, bool] | None  # mx.runtime.Features(): CUDA, CUDNN, MKLDNN, ...
    num_gpus: int | None
    keras_version: str | None
    keras_import_error: str | None


@dataclass(frozen=True)
class TargetInfo:
    python: str  # the interpreter path as the user named it (or sys.executable)
    executable: str  # sys.executable inside the target
    version: tuple[int, int, int]
    implementation: str
    platform: str
    machine: str
    prefix: str
    in_venv: bool
    distributions: Mapping[str, Distribution] = field(repr=False)  # normalized name -> dist
    has_pip: bool
    keras: KerasFacts
    runtime: RuntimeFacts | None = None
    sysconfig_platform: str = ""  # "linux-x86_64": what pip's platform tags derive from
    libc: tuple[str, str] = ("", "")  # ("glibc", "2.36") on most Linux systems
    # where each library the installed libmxnet.so needs resolves (kmx_cuda_libs.py)
    cuda_libs: Mapping[str, Any] | None = None

    @property
    def version_str(self) -> str:
        return ".".join(str(part) for part in self.version)

    @property
    def mxnet_distributions(self) -> tuple[Distribution, ...]:
        return tuple(
            d for key, d in sorted(self.distributions.items()) if is_mxnet_distribution(key)
        )

    def dist(self, name: str) -> Distribution | None:
        return self.distributions.get(normalize(name))

    @property
    def pip_version(self) -> str | None:
        d = self.dist("pip")
        return d.version if d else None

    @property
    def numpy_version(self) -> str | None:
        d = self.dist("numpy")
        return d.version if d else None

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "executable": self.executable,
            "version": self.version_str,
            "implementation": self.implementation,
            "platform": self.platform,
            "machine": self.machine,
            "prefix": self.prefix,
            "in_venv": self.in_venv,
            "has_pip": self.has_pip,
            "mxnet": [{"name": d.name, "version": d.version} for d in self.mxnet_distributions],
            "numpy": self.numpy_version,
            "keras": {
                "module_path": self.keras.module_path,
                "has_mxnet_backend": self.keras.has_mxnet_backend,
                "mxnet_backend_file": self.keras.mxnet_backend_file,
                "distributions": [
                    {"name": d.name, "version": d.version}
                    for key in ("keras", "keras-mxnet")
                    if (d := self.dist(key)) is not None
                ],
            },
            "runtime": None if self.runtime is None else dict(vars(self.runtime)),
        }


def resolve_python(python: str | os.PathLike[str] | None) -> str:
    """The interpreter to tune: *python* if given (a path, or a name on PATH), else
    the one running kmx-tune. Raises TargetError with what to do if it is unusable."""
    if python is None:
        return sys.executable
    raw = os.fspath(python)
    candidate = Path(raw).expanduser()
    if os.sep not in raw and not candidate.exists():
        found = shutil.which(raw)
        if found is None:
            raise TargetError(
                f"--python {raw}: not found on PATH; give the full path of the Python to tune, "
                "e.g. --python ~/venvs/keras/bin/python"
            )
        return found
    if not candidate.exists():
        raise TargetError(
            f"--python {raw}: no such file; give the path of a Python interpreter, "
            "e.g. --python ~/venvs/keras/bin/python"
        )
    if candidate.is_dir():
        for sub in ("bin/python", "bin/python3"):
            if (candidate / sub).exists():
                return str(candidate / sub)
        raise TargetError(
            f"--python {raw}: is a folder without bin/python; give the interpreter's path"
        )
    if not os.access(candidate, os.X_OK):
        raise TargetError(
            f"--python {raw}: is not executable; give the path of a Python interpreter"
        )
    # exec looks a name without a slash up on PATH: "./python" is the file meant here
    return str(candidate) if os.sep in str(candidate) else os.path.join(os.curdir, raw)


def run_script(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    timeout_message: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``kmx_tune/_in_target/<script>`` in *python*, capturing its output.

    Raises TargetError when the interpreter cannot be started, and KmxError with
    *timeout_message* (or a generic one) when it runs past *timeout* seconds."""
    cmd = [python, str(IN_TARGET_DIR / script), *args]
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, env=run_env, timeout=timeout, check=False
        )
    except OSError as exc:
        raise TargetError(
            f"{python}: cannot run it ({exc.strerror or exc}); give the path of a Python 3.6+ "
            "interpreter with --python"
        ) from None
    except subprocess.TimeoutExpired:
        raise KmxError(
            timeout_message
            or f"{python}: gave no answer within {timeout:.0f} s; check that it starts "
            f"(`{python} -c 'print(1)'`), or give another interpreter with --python"
        ) from None


def failure_tail(proc: subprocess.CompletedProcess[str]) -> str:
    """The last line a failed target process wrote, for a one-line error."""
    if "SyntaxError" in proc.stderr:
        return "it is older than Python 3.6, which kmx-tune needs"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"exit status {proc.returncode}"


def run_in_target(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> dict[str, Any]:
    """Run ``kmx_tune/_in_target/<script>`` in *python* and return the JSON object it
    prints. Raises TargetError when the interpreter cannot run it."""
    proc = run_script(python, script, args, env=env, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (
            failure_tail(proc)
            if proc.returncode or proc.stderr.strip()
            else "it ran but printed no report"
        )
        raise TargetError(f"{python}: does not work as a Python 3.6+ interpreter ({why})")
    try:
        data: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise TargetError(f"{python}: printed something that is not kmx-tune's report") from None
    return data


class Target:
    """The Python environment a command works on: its interpreter, what it has
    installed (:meth:`facts`, read by a script run inside it), and its pip."""

    def __init__(self, python: str, *, chosen_by: str = "--python") -> None:
        self.python = python  # the interpreter, as a path that runs it
        self.chosen_by = chosen_by  # why this one: "--python", ...
        self._facts: dict[bool, TargetInfo] = {}

    @classmethod
    def find(cls, python: str | os.PathLike[str] | None) -> Target:
        """The target a command means: *python* when given (a path, a venv folder or a
        name on PATH), else the interpreter running kmx-tune. Raises TargetError with
        what to do when it is unusable."""
        if python is None:
            return cls(sys.executable, chosen_by="the Python running kmx-tune")
        return cls(resolve_python(python))

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        """What the target has installed; *deep* also imports mxnet and keras there.
        *env*: the environment to run it with (default: this process's). Read once."""
        if deep not in self._facts or env is not None:
            raw = self.run_json("kmx_env_facts.py", ["--deep"] if deep else [], env=env)
            self._facts[deep] = facts_from_json(self.python, raw)
        return self._facts[deep]

    def run_script(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        timeout_message: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kmx_tune/_in_target/<script>`` in the target (see :func:`run_script`)."""
        return run_script(
            self.python, script, args, env=env, timeout=timeout, timeout_message=timeout_message
        )

    def run_json(
        self,
        script: str,
        args: Sequence[str] = (),
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> dict[str, Any]:
        """Run an in-target script and return the JSON object it prints."""
        return run_in_target(self.python, script, args, env=env, timeout=timeout)

    def pip(self, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
        """Run the target's own pip (``PY -m pip ARGS``)."""
        return run_pip(self.python, args, out)

    def pip_list(self) -> dict[str, Distribution]:
        """What the target's pip lists as installed, by normalized name."""
        return pip_list(self.python)


class RecordedTarget(Target):
    """A target known from recorded facts (as ``kmx_env_facts.py`` reports them): the
    seam for tests. It answers :meth:`facts` from the record and runs nothing."""

    def __init__(self, info: TargetInfo, *, chosen_by: str = "--python") -> None:
        super().__init__(info.python, chosen_by=chosen_by)
        self._facts = {False: info, True: info}

    @classmethod
    def from_report(cls, python: str, raw: Mapping[str, Any]) -> RecordedTarget:
        return cls(facts_from_json(python, raw))

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        return self._facts[deep]

    def run_script(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        raise TargetError(f"{self.python}: only recorded facts are known; nothing runs there")

    def run_json(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise TargetError(f"{self.python}: only recorded facts are known; nothing runs there")

    def pip(self, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
        raise TargetError(f"{self.python}: only recorded facts are known; pip cannot run there")

    def pip_list(self) -> dict[str, Distribution]:
        return dict(self.facts().distributions)


def facts_from_json(python: str, raw: Mapping[str, Any]) -> TargetInfo:
    dists = {
        key: Distribution(d["name"], d["version"], d.get("location", ""))
        for key, d in raw["distributions"].items()
    }
    runtime = None
    deep = raw.get("deep")
    if deep:
        runtime = RuntimeFacts(
            mxnet_version=deep.get("mxnet_version"),
            mxnet_import_error=deep.get("mxnet_import_error"),
            features=deep.get("features"),
            num_gpus=deep.get("num_gpus"),
            keras_version=deep.get("keras_version"),
            keras_import_error=deep.get("keras_import_error"),
        )
    version = raw["version"]
    return TargetInfo(
        python=python,
        executable=raw["executable"],
        version=(int(version[0]), int(version[1]), int(version[2])),
        implementation=raw["implementation"],
        platform=raw["platform"],
        machine=raw["machine"],
        prefix=raw["prefix"],
        in_venv=raw["prefix"] != raw["base_prefix"],
        distributions=dists,
        has_pip=bool(raw["pip_module"]),
        keras=KerasFacts(
            raw["keras"]["module_path"],
            bool(raw["keras"]["has_mxnet_backend"]),
            bool(raw["keras"].get("mxnet_backend_file", raw["keras"]["has_mxnet_backend"])),
        ),
        runtime=runtime,
        sysconfig_platform=str(raw.get("sysconfig_platform") or ""),
        libc=_libc(raw.get("libc")),
        cuda_libs=raw.get("cuda_libs") if isinstance(raw.get("cuda_libs"), dict) else None,
    )


def _libc(raw: Any) -> tuple[str, str]:
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw):
        return raw[0], raw[1]
    return "", ""
