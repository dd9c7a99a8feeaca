"""The Python environment being tuned: one :class:`Target` object, used by every
command that takes ``--python``: its interpreter, its facts and its pip.

The target may be a different, older interpreter than the one running kmx-tune
(``--python PATH``), so nothing here imports from it: a stdlib-only script from
``kmx_tune/_in_target/`` runs inside it and reports back as JSON. Tests describe a
target with :class:`RecordedTarget` (facts as the script reports them), which runs
nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO as _IO
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
    """The interpreter to tune: *python* if given (a path, a venv folder, or a name on
    PATH), else the one running kmx-tune. Raises TargetError with what to do if it is
    unusable."""
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
    # exec looks a name without a slash up on PATH: "./python" is the file meant here.
    # Path("./x") is "x": prefix the normalized name, not what was typed ("././x").
    text = str(candidate)
    return text if os.sep in text else os.path.join(os.curdir, text)


# ----------------------------------------------------------- the default target


class NoTargetError(TargetError):
    """No --python, and nothing the user may mean: no active environment, and the
    `python` on PATH is kmx-tune's own. *looked_at*: what was considered, and why not."""

    def __init__(self, looked_at: Sequence[str]) -> None:
        self.looked_at = tuple(looked_at)
        where = "; ".join(self.looked_at) or "no `python` on PATH"
        super().__init__(
            f"no Python environment to work on ({where}); activate your Keras-MXNet "
            "environment or give --python PATH (`kmx-tune doctor` shows how to make one)"
        )


def _env_python(prefix: str) -> str | None:
    for sub in ("bin/python", "bin/python3", "Scripts/python.exe"):
        if os.path.isfile(os.path.join(prefix, sub)):
            return os.path.join(prefix, sub)
    return None


def _same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _has_keras_or_mxnet(names: Sequence[str]) -> bool:
    return any(normalize(n) in ("keras", "keras-mxnet") or is_mxnet_distribution(n) for n in names)


def _own_has_keras_or_mxnet() -> bool:
    """Whether the environment running kmx-tune has Keras or an MXNet flavor: then it
    is a training environment too (kmx-tune installed into it), not only kmx-tune's.
    Read from the names of the metadata folders (NAME-VERSION.dist-info), which is all
    it takes and costs a directory listing, not a parse of every METADATA file."""
    names: list[str] = []
    for entry in sys.path:
        try:
            items = os.listdir(entry or os.curdir)
        except OSError:
            continue
        names += [
            item.split("-", 1)[0] for item in items if item.endswith((".dist-info", ".egg-info"))
        ]
    return _has_keras_or_mxnet(names)


OWN = "kmx-tune's own environment (no Keras or MXNet in it)"


def find_default(env: Mapping[str, str] | None = None) -> Target:
    """The target a command means without --python, as pip-like tools choose: the
    active virtual environment ($VIRTUAL_ENV), else the active conda environment
    ($CONDA_PREFIX), else `python` (or `python3`) on PATH. kmx-tune's own environment
    is passed over unless it has Keras or MXNet in it. With none of them, a
    MissingTarget."""
    env = os.environ if env is None else env
    looked_at: list[str] = []
    own_is_training: bool | None = None

    def own(prefix: str | os.PathLike[str]) -> bool:
        nonlocal own_is_training
        if not _same_path(prefix, sys.prefix):
            return False
        if own_is_training is None:
            own_is_training = _own_has_keras_or_mxnet()
        return not own_is_training

    for var, what in (
        ("VIRTUAL_ENV", "the active virtual environment"),
        ("CONDA_PREFIX", "the active conda environment"),
    ):
        prefix = env.get(var)
        if not prefix:
            continue
        python = _env_python(prefix)
        if python is None:
            looked_at.append(f"{var}={prefix} has no bin/python")
        elif own(prefix):
            looked_at.append(f"{var}={prefix} is {OWN}")
        else:
            return Target(python, chosen_by=f"{what} (${var})", passed_over=looked_at)
    path = env.get("PATH", os.defpath)
    for name in ("python", "python3"):  # python3 where there is no `python` (Debian)
        found = shutil.which(name, path=path)
        if found is None:
            continue
        if own(Path(found).parent.parent):
            looked_at.append(f"`{name}` on PATH ({found}) is {OWN}")
            break
        return Target(found, chosen_by=f"the `{name}` on PATH", passed_over=looked_at)
    return MissingTarget(NoTargetError(looked_at))


# ------------------------------------------------------- running in the target

OUTPUT_LIMIT = 16 * 1024 * 1024  # bytes a target may print on each stream
_EXIT_GRACE_S = 1.0  # after the target exits, how long its leftovers may hold the pipes


class _Reader(threading.Thread):
    """Reads one pipe to its end, keeping at most *limit* bytes."""

    def __init__(self, stream: _IO[bytes], limit: int, changed: threading.Event) -> None:
        super().__init__(daemon=True)
        self.fd = stream.fileno()
        self.limit = limit
        self.changed = changed
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.done = False

    def run(self) -> None:
        try:
            while True:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    break
                self.size += len(chunk)
                if self.size > self.limit:
                    self.overflow = True
                    break
                self.chunks.append(chunk)
        except OSError:
            pass
        finally:
            self.done = True
            self.changed.set()

    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the target and everything it started (its own process group)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc.wait(timeout=5)


class _Stop(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


def _close(proc: subprocess.Popen[bytes], readers: Sequence[_Reader]) -> None:
    """Close the pipes once their readers are done. A reader still blocked (a process
    that left the group holds the pipe) keeps its descriptor: closing it under a
    read could hand the number to another file."""
    for reader in readers:
        reader.join(2)
    if all(reader.done for reader in readers):
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _collect(
    proc: subprocess.Popen[bytes], timeout: float, limit: int, readers: list[_Reader]
) -> tuple[_Reader, _Reader]:
    """Wait for *proc* and read its output: until both pipes close, or until the
    target has exited and its leftovers have held the pipes for a moment longer.
    Raises _Stop("timeout") or _Stop("stdout"/"stderr") (printed more than *limit*).
    The readers started are added to *readers*."""
    assert proc.stdout is not None and proc.stderr is not None
    changed = threading.Event()
    out, err = _Reader(proc.stdout, limit, changed), _Reader(proc.stderr, limit, changed)
    readers += [out, err]
    out.start()
    err.start()

    def wait() -> None:
        with contextlib.suppress(Exception):
            proc.wait()
        changed.set()

    threading.Thread(target=wait, daemon=True).start()
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    while True:
        for name, reader in (("stdout", out), ("stderr", err)):
            if reader.overflow:
                raise _Stop(name)
        now = time.monotonic()
        if proc.returncode is not None:
            if out.done and err.done:
                return out, err
            exited_at = now if exited_at is None else exited_at
            if now - exited_at >= _EXIT_GRACE_S:
                return out, err  # a process it left behind holds the pipes
        if now >= deadline:
            raise _Stop("timeout")
        wait_for = deadline - now
        if exited_at is not None:
            wait_for = min(wait_for, exited_at + _EXIT_GRACE_S - now)
        changed.wait(max(wait_for, 0.0))
        changed.clear()


def run_script(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    timeout_message: str | None = None,
    output_limit: int = OUTPUT_LIMIT,
) -> subprocess.CompletedProcess[str]:
    """Run ``kmx_tune/_in_target/<script>`` in *python*, capturing its output.

    The target runs in a process group of its own, and whatever is left of that group
    when the call ends (a hang past *timeout*, a flood past *output_limit* bytes, a
    process it left behind holding the pipes) is killed. Raises TargetError when the
    interpreter cannot be started, and KmxError with *timeout_message* (or a generic
    one) when it runs past *timeout* seconds or prints too much."""
    cmd = [python, str(IN_TARGET_DIR / script), *args]
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=run_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise TargetError(
            f"{python}: cannot run it ({exc.strerror or exc}); give the path of a Python 3.6+ "
            "interpreter with --python"
        ) from None
    readers: list[_Reader] = []
    try:
        try:
            out, err = _collect(proc, timeout, output_limit, readers)
        finally:
            _kill_group(proc)
            _close(proc, readers)
    except _Stop as stop:
        if stop.why == "timeout":
            raise KmxError(
                timeout_message
                or f"{python}: gave no answer within {timeout:.0f} s; check that it starts "
                f"(`{python} -c 'print(1)'`), or give another interpreter with --python"
            ) from None
        raise KmxError(
            f"{python}: printed more than {output_limit // (1024 * 1024)} MiB on {stop.why} "
            "and was stopped; check what its site-packages or PYTHONSTARTUP print, or give "
            "another interpreter with --python"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out.text(), err.text())


def failure_tail(proc: subprocess.CompletedProcess[str]) -> str:
    """The last line a failed target process wrote, for a one-line error."""
    if "SyntaxError" in proc.stderr:
        return "it is older than Python 3.6, which kmx-tune needs"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"exit status {proc.returncode}"


def _report(stdout: str, schema: str | None) -> dict[str, Any] | None:
    """The last line of *stdout* that is kmx-tune's JSON report (with *schema*, or any
    "kmx-tune/..." one): a JSON line printed by something else (a sitecustomize, an
    atexit logger) is not mistaken for it."""
    for line in reversed(stdout.splitlines()):
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        found = data.get("schema")
        if found == schema or (schema is None and str(found).startswith("kmx-tune/")):
            return data
    return None


def _too_old_next_step(why: str) -> str:
    """For a Python older than 3.6: the interpreter to make a Keras-MXNet venv with."""
    if "kmx-tune needs Python 3.6" not in why and "older than Python 3.6" not in why:
        return ""
    from kmx_tune.interpreters import VENV, find_keras_python

    found = find_keras_python()
    if found is None:
        return (
            "; keras-mxnet needs Python 3.6-3.9: install one, make a venv with it and give "
            f"--python {VENV}/bin/python"
        )
    return (
        f"; for keras-mxnet make a venv with Python {found.version_str} ({found.source}): "
        f"`{shlex.quote(found.path)} -m venv {VENV}`, then give --python {VENV}/bin/python"
    )


def run_in_target(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    schema: str | None = None,
) -> dict[str, Any]:
    """Run ``kmx_tune/_in_target/<script>`` in *python* and return the JSON report it
    prints (the line with *schema*, or any kmx-tune schema). Raises TargetError when
    the interpreter cannot run it."""
    proc = run_script(python, script, args, env=env, timeout=timeout)
    data = _report(proc.stdout, schema)
    if proc.returncode != 0 or data is None:
        why = (
            failure_tail(proc)
            if proc.returncode or proc.stderr.strip()
            else "it ran but printed no report"
        )
        raise TargetError(
            f"{python}: does not work as a Python 3.6+ interpreter ({why})"
            + _too_old_next_step(why)
        )
    return data


FACTS_SCHEMA = "kmx-tune/target-facts/1"


class Target:
    """The Python environment a command works on: its interpreter, what it has
    installed (:meth:`facts`, read by a script run inside it), and its pip."""

    def __init__(
        self, python: str, *, chosen_by: str = "--python", passed_over: Sequence[str] = ()
    ) -> None:
        self._python = python
        self.chosen_by = chosen_by  # why this one: "--python", "the active virtual ...", ...
        self.passed_over = tuple(passed_over)  # defaults considered first, and why not
        self._facts: dict[bool, TargetInfo] = {}

    @property
    def python(self) -> str:
        """The interpreter, as a path that runs it."""
        return self._python

    @property
    def is_default(self) -> bool:
        """Chosen without --python (see :func:`find_default`)."""
        return self.chosen_by != "--python"

    @classmethod
    def find(
        cls, python: str | os.PathLike[str] | None, *, env: Mapping[str, str] | None = None
    ) -> Target:
        """The target a command means: *python* when given (a path, a venv folder or a
        name on PATH), else the active virtual or conda environment, else `python` on
        PATH, never kmx-tune's own environment unless it has Keras or MXNet
        (:func:`find_default`, which reads *env*). Raises TargetError with what to do
        when *python* is unusable; when there is no default, the :class:`MissingTarget`
        returned raises NoTargetError where it is first used, so that a command's
        other arguments are checked first."""
        if python is None:
            return find_default(env)
        return cls(resolve_python(python))

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        """What the target has installed; *deep* also imports mxnet and keras there.
        *env*: the environment to run it with (default: this process's). Read once.
        A default target that turns out to be kmx-tune's own environment (a pyenv shim
        for `python`, say) raises NoTargetError, as find_default would have."""
        if deep not in self._facts or env is not None:
            raw = self.run_json(
                "kmx_env_facts.py", ["--deep"] if deep else [], env=env, schema=FACTS_SCHEMA
            )
            info = facts_from_json(self.python, raw)
            if (
                self.is_default
                and _same_path(info.prefix, sys.prefix)
                and not _has_keras_or_mxnet([d.name for d in info.distributions.values()])
            ):
                raise NoTargetError(
                    [*self.passed_over, f"{self.chosen_by} ({self.python}) is {OWN}"]
                )
            self._facts[deep] = info
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
        schema: str | None = None,
    ) -> dict[str, Any]:
        """Run an in-target script and return the JSON report it prints."""
        return run_in_target(self.python, script, args, env=env, timeout=timeout, schema=schema)

    def pip(self, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
        """Run the target's own pip (``PY -m pip ARGS``)."""
        return run_pip(self.python, args, out)

    def pip_list(self) -> dict[str, Distribution]:
        """What the target's pip lists as installed, by normalized name."""
        return pip_list(self.python)


class MissingTarget(Target):
    """No --python and no default (see :func:`find_default`): using it in any way
    raises the NoTargetError that says why and what to do."""

    def __init__(self, error: NoTargetError) -> None:
        super().__init__("", chosen_by="nothing", passed_over=error.looked_at)
        self.error = error

    @property
    def python(self) -> str:
        raise self.error

    def facts(self, *, deep: bool = False, env: Mapping[str, str] | None = None) -> TargetInfo:
        raise self.error


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


_STR, _OPT_STR, _BOOL = (str,), (str, type(None)), (bool,)

# The facts report, field by field: (name, types it may have, required). Checked before
# it is read, so a target that prints something else of the right schema gets one line.
_FACTS_FIELDS: tuple[tuple[str, tuple[type, ...], bool], ...] = (
    ("executable", _STR, True),
    ("version", (list,), True),
    ("implementation", _STR, True),
    ("platform", _STR, True),
    ("machine", _STR, True),
    ("prefix", _STR, True),
    ("base_prefix", _STR, True),
    ("distributions", (dict,), True),
    ("pip_module", _BOOL, True),
    ("keras", (dict,), True),
    ("deep", (dict, type(None)), False),
    ("sysconfig_platform", _OPT_STR, False),
)
_KERAS_FIELDS = (
    ("module_path", _OPT_STR, True),
    ("has_mxnet_backend", _BOOL, True),
    ("mxnet_backend_file", _BOOL, False),
)
_DEEP_FIELDS = (
    ("mxnet_version", _OPT_STR, False),
    ("mxnet_import_error", _OPT_STR, False),
    ("features", (dict, type(None)), False),
    ("num_gpus", (int, type(None)), False),
    ("keras_version", _OPT_STR, False),
    ("keras_import_error", _OPT_STR, False),
)


def _fields_problem(
    data: Mapping[str, Any], fields: Sequence[tuple[str, tuple[type, ...], bool]], prefix: str
) -> str | None:
    for name, kinds, required in fields:
        if name not in data:
            if required:
                return f"field '{prefix}{name}' is missing"
            continue
        value = data[name]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            shown = json.dumps(value, default=str)[:40]
            kinds_text = " or ".join(_KIND_NAMES[k] for k in kinds)
            return f"field '{prefix}{name}' must be {kinds_text}, not {shown}"
    return None


_KIND_NAMES = {
    str: "a string",
    bool: "true or false",
    int: "a whole number",
    list: "a list",
    dict: "an object",
    type(None): "null",
}


def facts_problem(raw: Any) -> str | None:
    """What is wrong with a facts report (the first problem), or None."""
    if not isinstance(raw, Mapping):
        return "it is not a JSON object"
    problem = _fields_problem(raw, _FACTS_FIELDS, "")
    if problem:
        return problem
    version = raw["version"]
    if len(version) != 3 or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1000 for n in version
    ):
        return f"field 'version' must be three whole numbers, not {json.dumps(version)[:40]}"
    for key, dist in raw["distributions"].items():
        where = f"distributions[{json.dumps(key)[:40]}]."
        if not isinstance(dist, Mapping):
            return f"field {where[:-1]!r} must be an object"
        problem = _fields_problem(
            dist, (("name", _STR, True), ("version", _STR, True), ("location", _STR, False)), where
        )
        if problem:
            return problem
    problem = _fields_problem(raw["keras"], _KERAS_FIELDS, "keras.")
    if problem:
        return problem
    deep = raw.get("deep")
    if deep:
        problem = _fields_problem(deep, _DEEP_FIELDS, "deep.")
        if problem:
            return problem
        features = deep.get("features") or {}
        if not all(isinstance(v, bool) for v in features.values()):
            return "field 'deep.features' must map names to true or false"
    return None


def facts_from_json(python: str, raw: Mapping[str, Any]) -> TargetInfo:
    """The facts report (as kmx_env_facts.py prints it) as a TargetInfo. Raises
    TargetError naming the first field that is missing or of the wrong kind."""
    problem = facts_problem(raw)
    if problem is not None:
        raise TargetError(
            f"{python}: printed a facts report kmx-tune cannot read ({problem}); check that "
            "it is a plain Python 3.6+ interpreter (not a wrapper that prints its own JSON), "
            "or give another with --python"
        )
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
    keras = raw["keras"]
    return TargetInfo(
        python=python,
        executable=raw["executable"],
        version=(version[0], version[1], version[2]),
        implementation=raw["implementation"],
        platform=raw["platform"],
        machine=raw["machine"],
        prefix=raw["prefix"],
        in_venv=raw["prefix"] != raw["base_prefix"],
        distributions=dists,
        has_pip=raw["pip_module"],
        keras=KerasFacts(
            keras["module_path"],
            keras["has_mxnet_backend"],
            keras.get("mxnet_backend_file", keras["has_mxnet_backend"]),
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
