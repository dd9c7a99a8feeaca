"""Which interpreter a command works on: ``--python`` resolved to a path that runs, and
the facts that choosing a default rests on (kmx-tune's own environment, and whether
it holds Keras or MXNet)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from kmx_tune.dists import is_mxnet_distribution, normalize
from kmx_tune.errors import TargetError


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
