"""Checking a converted HDF5 file against its source: the same tree of objects, links
and attribute names, and each converted dataset's rows equal to the source's,
transposed (the first, middle and last rows; with ``full``, every row of every
dataset)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from kmx_tune.convert import layout as L
from kmx_tune.convert.h5io import h5py_module as _h5py
from kmx_tune.convert.h5io import reading as _reading
from kmx_tune.errors import KmxError


def _tree(f: Any) -> dict[str, str]:
    """Every path in the file and what is there: a group, a dataset, or a link."""
    h5py = _h5py()
    found: dict[str, str] = {}

    def walk(g: Any, prefix: str) -> None:
        for name in g:
            path = prefix + name
            link = g.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                found[path] = f"soft:{link.path}"
            elif isinstance(link, h5py.ExternalLink):
                found[path] = f"external:{link.filename}:{link.path}"
            else:
                obj = g[name]
                if isinstance(obj, h5py.Group):
                    found[path] = "group"
                    walk(obj, path + "/")
                elif isinstance(obj, h5py.Dataset):
                    found[path] = "dataset"
                else:
                    found[path] = "datatype"

    walk(f, "")
    return found


def verify_h5(
    src: Path, out_path: Path, todo: dict[str, L.ArrayPlan], *, full: bool, where: str
) -> None:
    """The output against the source: the same objects, links and attribute names; each
    converted dataset's type and shape as planned and its first, middle and last rows
    (``full``: every row of every dataset) equal to the source's, transposed."""
    h5py = _h5py()
    mismatch = KmxError(f"{where}: the output does not match the source; nothing was replaced")
    with _reading(where), h5py.File(src, "r") as fin, h5py.File(out_path, "r") as fout:
        if _tree(fin) != _tree(fout) or set(fin.attrs) != set(fout.attrs):
            raise mismatch
        for path, kind in _tree(fin).items():
            if kind != "dataset":
                continue
            a, b = fin[path], fout[path]
            plan = todo.get(path)
            if set(a.attrs) != set(b.attrs) or a.dtype != b.dtype:
                raise mismatch
            if plan is None:
                if a.shape != b.shape or (full and not _same_rows(a, b, None)):
                    raise mismatch
                continue
            if tuple(b.shape) != tuple(plan.out_shape) or not _same_rows(a, b, plan, full=full):
                raise mismatch


def _same_rows(a: Any, b: Any, plan: L.ArrayPlan | None, *, full: bool = True) -> bool:
    if a.shape is None or a.shape == ():
        if a.shape != b.shape:
            return False
        return a.shape is None or _equal(np.asarray(a[()]), np.asarray(b[()]))
    n = a.shape[0]
    if n == 0:
        return True
    step = max(1, (8 << 20) // max(1, math.prod(a.shape[1:]) * a.dtype.itemsize))
    if full:
        spans = [(i, min(n, i + step)) for i in range(0, n, step)]
    else:
        spans = [(i, i + 1) for i in sorted({0, n // 2, n - 1})]
    for start, stop in spans:
        x, y = a[start:stop], b[start:stop]
        if plan is not None and plan.action == L.TRANSPOSE:
            assert plan.perm is not None
            x = x.transpose(plan.perm)
        elif plan is not None:
            x = x.reshape(y.shape)
        if x.shape != y.shape or not _equal(x, y):
            return False
    return True


def _equal(x: np.ndarray, y: np.ndarray) -> bool:
    """Equal element for element: bytes for numbers (NaN equals NaN, -0.0 is not 0.0),
    values for variable-length data."""
    if x.dtype.hasobject:
        return bool(x.tolist() == y.tolist())
    return np.array_equal(
        np.ascontiguousarray(x).reshape(-1).view(np.uint8),
        np.ascontiguousarray(y).reshape(-1).view(np.uint8),
    )


__all__ = ["verify_h5"]
