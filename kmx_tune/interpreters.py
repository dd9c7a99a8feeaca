"""Pythons on this machine that can run keras-mxnet 2.2.4.3 (3.6 to 3.9), found where
people keep them: on PATH, in pyenv, conda and uv; and the Keras-MXNet environments
already made. This is what turns "make a venv with an older Python" into a command
that works here.

Advice only: nothing here changes anything. A candidate is named only after it ran
(``-c``) and showed that it has ``venv`` and ``ensurepip`` (Debian's python3.X without
python3.X-venv cannot make a venv with pip). Candidates are found from paths, without
running them, and then tried best first until one works, so a doctor run pays for one
short process, only when its advice needs an interpreter, and only the first time: the
answer is cached per interpreter file (its size and modification time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# keras-mxnet 2.2.4.3 imports on Python 3.6 to 3.9 (3.10 removed collections.Iterable,
# which keras/callbacks.py imports); newest first, the order they are preferred in.
KERAS_PYTHONS: tuple[tuple[int, int], ...] = ((3, 9), (3, 8), (3, 7), (3, 6))
KERAS_MXNET = "keras-mxnet==2.2.4.3"
VENV = "~/venvs/keras-mxnet"  # where the advice puts the new environment
SOURCES = ("PATH", "pyenv", "uv", "conda")  # preferred in this order for the same version

# Runs in the candidate: its version, and a failure unless it can make a venv with pip.
_PROBE = (
    "import sys, venv, ensurepip; ensurepip.version(); "
    "sys.stdout.write('%d.%d.%d' % tuple(sys.version_info[:3]))"
)
_PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: tuple[int, int, int]
    source: str  # "PATH", "pyenv", "uv" or "conda": where it was found

    @property
    def version_str(self) -> str:
        return ".".join(str(n) for n in self.version)

    def describe(self) -> str:
        return f"Python {self.version_str} at {self.path} ({self.source})"


@dataclass(frozen=True)
class Candidate:
    """A Python found by its path, not yet run."""

    path: str
    minor: tuple[int, int]
    patch: int
    source: str


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def pyenv_root(env: Mapping[str, str]) -> Path:
    return Path(env.get("PYENV_ROOT") or _home(env) / ".pyenv")


def _version_in(name: str) -> tuple[int, int, int] | None:
    """(3, 9, 18) from "3.9.18", "cpython-3.9.18-linux-x86_64-gnu" or "python3.9"."""
    found = re.search(r"(?<![\d.])3\.(\d+)(?:\.(\d+))?", name)
    if found is None:
        return None
    return 3, int(found.group(1)), int(found.group(2) or 0)


def _on_path(env: Mapping[str, str]) -> Iterator[Candidate]:
    shims = str(pyenv_root(env) / "shims")
    for minor in KERAS_PYTHONS:
        found = shutil.which(f"python{minor[0]}.{minor[1]}", path=env.get("PATH", ""))
        # a pyenv shim runs only the versions pyenv has selected: the real path instead
        if found and not found.startswith(shims + os.sep):
            yield Candidate(found, minor, 0, "PATH")


def _in_pyenv(env: Mapping[str, str]) -> Iterator[Candidate]:
    versions = pyenv_root(env) / "versions"
    for folder in _children(versions):
        if not re.fullmatch(r"3\.\d+\.\d+", folder.name):
            continue  # a pyenv-virtualenv env or a non-CPython build
        yield from _installed(folder, "pyenv")


def uv_python_dir(env: Mapping[str, str]) -> Path:
    if env.get("UV_PYTHON_INSTALL_DIR"):
        return Path(env["UV_PYTHON_INSTALL_DIR"])
    data = env.get("XDG_DATA_HOME") or str(_home(env) / ".local" / "share")
    return Path(data) / "uv" / "python"


def _in_uv(env: Mapping[str, str]) -> Iterator[Candidate]:
    for folder in _children(uv_python_dir(env)):
        if not folder.name.startswith("cpython-"):
            continue
        yield from _installed(folder, "uv")


def conda_roots(env: Mapping[str, str]) -> list[Path]:
    """Conda installations: from CONDA_EXE and CONDA_PREFIX, and the usual folders."""
    home = _home(env)
    roots: list[Path] = []
    if env.get("CONDA_EXE"):
        roots.append(Path(env["CONDA_EXE"]).parent.parent)
    if env.get("CONDA_PREFIX"):
        prefix = Path(env["CONDA_PREFIX"])
        roots.append(prefix.parent.parent if prefix.parent.name == "envs" else prefix)
    for name in ("miniconda3", "anaconda3", "miniforge3", "mambaforge", "micromamba"):
        roots.append(home / name)
    roots += [Path("/opt/conda"), Path("/opt/miniconda3")]
    unique: list[Path] = []
    for root in roots:
        if root not in unique and root.is_dir():
            unique.append(root)
    return unique


def conda_envs(env: Mapping[str, str]) -> list[Path]:
    """Every conda environment: each root, its envs/*, and ~/.conda/environments.txt."""
    found: list[Path] = []
    for root in conda_roots(env):
        found.append(root)
        found += _children(root / "envs")
    try:
        listed = (_home(env) / ".conda" / "environments.txt").read_text().splitlines()
    except (OSError, UnicodeError):
        listed = []
    found += [Path(line.strip()) for line in listed if line.strip()]
    unique: list[Path] = []
    for prefix in found:
        if prefix not in unique:
            unique.append(prefix)
    return unique


def _in_conda(env: Mapping[str, str]) -> Iterator[Candidate]:
    for prefix in conda_envs(env):
        for lib in sorted((prefix / "lib").glob("python3.*")):
            version = _version_in(lib.name)
            if version is not None:
                yield Candidate(str(prefix / "bin" / "python"), version[:2], 0, "conda")


def _installed(folder: Path, source: str) -> Iterator[Candidate]:
    """The Python installed in *folder* (a pyenv or uv version folder named after it)."""
    version = _version_in(folder.name)
    if version is not None:
        python = folder / "bin" / f"python{version[0]}.{version[1]}"
        yield Candidate(str(python), version[:2], version[2], source)


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


_FINDERS: dict[str, Callable[[Mapping[str, str]], Iterator[Candidate]]] = {
    "PATH": _on_path,
    "pyenv": _in_pyenv,
    "uv": _in_uv,
    "conda": _in_conda,
}


def candidates(env: Mapping[str, str] | None = None) -> list[Candidate]:
    """Pythons 3.6 to 3.9 found by their paths, best first: the newest minor version,
    then PATH, pyenv, uv, conda, then the newest patch release."""
    env = os.environ if env is None else env
    found = [
        c
        for source in SOURCES
        for c in _FINDERS[source](env)
        if c.minor in KERAS_PYTHONS and os.path.isfile(c.path)
    ]
    found.sort(key=lambda c: (-c.minor[1], SOURCES.index(c.source), -c.patch))
    unique: list[Candidate] = []
    for c in found:
        if all(os.path.realpath(c.path) != os.path.realpath(u.path) for u in unique):
            unique.append(c)
    return unique


def probe(path: str) -> tuple[int, int, int] | None:
    """The version of the Python at *path* if it runs and can make a venv with pip."""
    try:
        proc = subprocess.run(
            [path, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", proc.stdout.strip())
    if proc.returncode != 0 or found is None:
        return None
    return int(found.group(1)), int(found.group(2)), int(found.group(3))


CACHE_SCHEMA = "kmx-tune/interpreters/1"


def _identity(path: str) -> str | None:
    """What a cached answer for *path* is valid for: the file it resolves to, its size
    and modification time (a reinstalled or upgraded Python is tried again)."""
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError:
        return None
    return f"{real}:{info.st_size}:{info.st_mtime_ns}"


def probe_cached(path: str) -> tuple[int, int, int] | None:
    """:func:`probe`, remembered in the cache folder (``interpreters.json``) per
    interpreter file, so a warm doctor run starts no process for it. Only a working
    interpreter is remembered."""
    from kmx_tune.hardware.cpu import cache_dir

    identity = _identity(path)
    if identity is None:
        return None
    cache = cache_dir() / "interpreters.json"
    try:
        data = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        data = {}
    known = data.get("interpreters") if isinstance(data, dict) else None
    known = known if isinstance(known, dict) and data.get("schema") == CACHE_SCHEMA else {}
    answer = known.get(identity)
    if (
        isinstance(answer, list)
        and len(answer) == 3
        and all(isinstance(n, int) and not isinstance(n, bool) for n in answer)
    ):
        return answer[0], answer[1], answer[2]
    version = probe(path)
    if version is None:
        return None  # not remembered: installing python3.X-venv, say, makes it usable
    known = {**known, identity: list(version)}
    with contextlib.suppress(OSError):  # a cache that cannot be written is not used
        from kmx_tune.fsio import atomic_write

        cache.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"schema": CACHE_SCHEMA, "interpreters": known})
        atomic_write(cache, text.encode("utf-8"))
    return version


def find_keras_python(
    env: Mapping[str, str] | None = None,
    *,
    run: Callable[[str], tuple[int, int, int] | None] = probe_cached,
) -> Interpreter | None:
    """The best Python 3.6 to 3.9 on this machine that works and can make a venv with
    pip, or None. *run*: how a candidate is tried (tests may record answers)."""
    for c in candidates(env):
        version = run(c.path)
        if version is not None and version[:2] in KERAS_PYTHONS:
            return Interpreter(c.path, version, c.source)
    return None


def _q(words: Sequence[str]) -> str:
    """Shell words; the ~ of the venv folder is left for the shell to expand."""
    return " ".join(w if w.startswith("~/") and _plain(w) else shlex.quote(w) for w in words)


def _plain(word: str) -> bool:
    return re.fullmatch(r"[~\w./+-]+", word) is not None


@dataclass(frozen=True)
class Route:
    """How to get an environment where keras-mxnet runs: the command, what it rests
    on, and whether it is a command at all (with no Python 3.6-3.9 and no uv, pyenv or
    conda here, it is what to install first, in words)."""

    fix: str
    detail: str
    runnable: bool = True


def keras_venv_route(
    interpreter: Interpreter | None,
    requirements: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> Route:
    """The one command that makes ``~/venvs/keras-mxnet`` with keras-mxnet and the
    recommended MXNet (*requirements*) and checks it, with *interpreter*; without one,
    the command that gets a Python 3.9 too (uv, pyenv or conda, whichever is here), or
    else what to install."""
    env = os.environ if env is None else env
    pip = f"{VENV}/bin/python -m pip install {_q([KERAS_MXNET, *requirements])}"
    check = f"kmx-tune doctor --python {VENV}/bin/python"
    if interpreter is not None:
        return Route(
            f"{_q([interpreter.path])} -m venv {VENV} && {pip} && {check}",
            f"found {interpreter.describe()}",
        )
    looked = "no Python 3.6-3.9 that can make a venv found on PATH, in pyenv, uv or conda"
    path = env.get("PATH", "")
    if shutil.which("uv", path=path):
        return Route(
            f"uv venv --seed --python 3.9 {VENV} && {pip} && {check}",
            f"{looked}; uv downloads Python 3.9 (--seed adds pip)",
        )
    if shutil.which("pyenv", path=path) or (pyenv_root(env) / "bin" / "pyenv").exists():
        return Route(
            f"pyenv install 3.9 && PYENV_VERSION=3.9 pyenv exec python -m venv {VENV} "
            f"&& {pip} && {check}",
            f"{looked}; pyenv builds Python 3.9 from source (a few minutes)",
        )
    if shutil.which("conda", path=path) or env.get("CONDA_EXE"):
        return Route(
            f"conda create -y -p {VENV} python=3.9 pip && {pip} && {check}",
            f"{looked}; conda installs Python 3.9 into the new environment",
        )
    return Route(
        "install Python 3.9 (with uv: `uv python install 3.9`; or pyenv, conda, or your "
        "system's python3.9 and python3.9-venv packages), then run kmx-tune doctor again",
        looked,
        runnable=False,
    )


def find_keras_environments(
    env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> list[str]:
    """Pythons of the environments that have keras-mxnet installed, looked for where
    environments are usually kept (~/venvs, ~/.virtualenvs, $WORKON_HOME, pyenv, conda,
    .venv and venv in the current folder), from their files alone."""
    env = os.environ if env is None else env
    home = _home(env)
    cwd = Path.cwd() if cwd is None else cwd
    parents = [home / "venvs", home / ".venvs", home / ".virtualenvs", home / "envs"]
    if env.get("WORKON_HOME"):
        parents.append(Path(env["WORKON_HOME"]))
    prefixes = [p for parent in parents for p in _children(parent)]
    prefixes += [cwd / ".venv", cwd / "venv", cwd / "env"]
    prefixes += _children(pyenv_root(env) / "versions")
    prefixes += [p for v in _children(pyenv_root(env) / "versions") for p in _children(v / "envs")]
    prefixes += conda_envs(env)
    found: list[str] = []
    for prefix in prefixes:
        python = prefix / "bin" / "python"
        if not python.exists() or not any(
            prefix.glob("lib/python3.*/site-packages/keras_mxnet-*.dist-info")
        ):
            continue
        if all(os.path.realpath(python) != os.path.realpath(f) for f in found):
            found.append(str(python))
    return found
