"""Opening HDF5 files with h5py: what kind of file a ``.h5`` is (:func:`sniff`), and
h5py's errors said in one line (:func:`reading`, :func:`writing`). Shared by
:mod:`.h5` (datasets) and :mod:`.keras_model` (models); h5py loads on first use."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kmx_tune.convert.common import open_regular
from kmx_tune.convert.npyio import FormatError
from kmx_tune.convert.writer import DiskFullError
from kmx_tune.errors import KmxError

MODEL = "model"  # a Keras model saved with model.save()
WEIGHTS = "weights"  # a Keras weights file saved with model.save_weights()
DATA = "data"

SUFFIXES = (".h5", ".hdf5")


def h5py_module() -> Any:
    import h5py

    return h5py


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_disk_full(exc: BaseException) -> bool:
    text = str(exc)
    return (
        getattr(exc, "errno", None) in (28, 122)
        or "No space left" in text
        or "errno = 28" in text
        or "Disk quota" in text
    )


@contextlib.contextmanager
def reading(where: str) -> Iterator[None]:
    """h5py's errors while reading ``where``, as one line that says what to do."""
    try:
        yield
    except KmxError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise FormatError(
            f"{where}: cannot read it as HDF5 ({_first_line(exc)}); the file is truncated, "
            "corrupt or not HDF5"
        ) from None


@contextlib.contextmanager
def writing(final: Path) -> Iterator[None]:
    try:
        yield
    except KmxError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        if _is_disk_full(exc):
            raise DiskFullError(
                f"{final.parent}: no space left on the device; nothing was written and the "
                "source is untouched; free some space or write elsewhere with -o"
            ) from None
        raise KmxError(f"{final}: cannot write it: {_first_line(exc)}") from None


def sniff(src: Path) -> str:
    """MODEL, WEIGHTS or DATA: what kind of HDF5 file ``src`` is. Raises FormatError
    (one line) when it cannot be read as HDF5."""
    fd, _size = open_regular(src)  # refuses folders, FIFOs and empty files first
    os.close(fd)
    h5py = h5py_module()
    with reading(str(src)), h5py.File(src, "r") as f:
        attrs = set(f.attrs.keys())
    if "model_config" in attrs:
        return MODEL
    if "layer_names" in attrs:
        return WEIGHTS
    return DATA


def model_config(src: Path) -> str:
    """The ``model_config`` attribute of a Keras model file (JSON text)."""
    h5py = h5py_module()
    with reading(str(src)), h5py.File(src, "r") as f:
        raw = f.attrs["model_config"]
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def dataset_names(src: Path) -> list[str]:
    """The paths of the datasets in ``src`` (for ``--key`` checks across files)."""
    h5py = h5py_module()
    names: list[str] = []
    with h5py.File(src, "r") as f:
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return names


__all__ = [
    "DATA",
    "MODEL",
    "SUFFIXES",
    "WEIGHTS",
    "dataset_names",
    "h5py_module",
    "model_config",
    "reading",
    "sniff",
    "writing",
]
