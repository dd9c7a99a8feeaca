"""Converting one HDF5 file (h5py): ``keras.utils.HDF5Matrix`` datasets and the rest.

A ``.h5`` is one of three things, told apart by its root attributes
(:func:`.h5io.sniff`): a Keras model from ``model.save()`` (``model_config``), a
weights file from ``save_weights()`` (``layer_names``), or a dataset file. Models go to
:mod:`.keras_model`; this module converts dataset files.

Every dataset is planned by :mod:`.layout`'s rules under its path (``x_train``,
``train/images``), like an array in an .npz. The output is a new HDF5 file beside the
final name: datasets that do not change, named datatypes and whole groups without a
converted dataset are copied by HDF5 itself (``H5Ocopy``: filters, chunks, attributes
and all); soft and external links are recreated; a converted dataset gets the source's
creation properties (its compression and other filters, fill value, maxshape) with
the new shape, and chunks of whole channels_first samples (about 1 MiB each, so a batch
read touches few chunks) where the source was chunked; a contiguous source stays
contiguous (a batch of samples is then one contiguous read). The data streams through
two fixed buffers a few MB each: rows are read in chunk-aligned blocks, transposed on
all cores (:func:`.kernel.copy_block`) and written, while a reader thread fetches the
next block. The file is synced, checked against the source and only then renamed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmx_tune.convert import layout as L
from kmx_tune.convert.common import (
    NOTHING_TO_DO,
    PLANNED,
    FileOutcome,
    Options,
    Progress,
    RefusedError,
    check_keys,
    converted,
    dry_run,
    prepare_output,
    publish,
)
from kmx_tune.convert.deflate import backend
from kmx_tune.convert.h5check import verify_h5
from kmx_tune.convert.h5io import h5py_module as _h5py
from kmx_tune.convert.h5io import reading as _reading
from kmx_tune.convert.h5io import writing as _writing
from kmx_tune.convert.kernel import copy_block
from kmx_tune.convert.writer import open_temp

CHUNK_TARGET = 1 << 20  # bytes per output chunk: HDF5's default chunk cache holds one
_READ_CACHE_MAX = 64 << 20  # the source's chunk cache: one band of source chunks, at most


# -- planning -------------------------------------------------------------------------


def _dtype_str(dtype: np.dtype) -> str:
    if dtype.hasobject:
        return "vlen"
    if dtype.fields is not None or dtype.subdtype is not None:
        return str(dtype)
    return dtype.name if dtype.isnative else dtype.str


def _plan_dataset(path: str, dset: Any, opts: Options) -> L.ArrayPlan:
    shape = dset.shape
    if shape is None:  # an empty (null dataspace) dataset
        return L.ArrayPlan(path, (), "", L.NOT_IMAGE, L.COPY, (), "empty dataset: copied")
    shape = tuple(int(n) for n in shape)
    dtype = dset.dtype
    plan = L.plan_array(
        path,
        shape,
        _dtype_str(dtype),
        opts.to,
        keys=opts.keys,
        add_channel_axis=opts.add_channel_axis,
    )
    if plan.action not in (L.TRANSPOSE, L.ADD_CHANNEL_AXIS):
        return plan
    why = _cannot_convert(dset)
    if why:
        return dataclasses.replace(plan, action=L.REFUSE, out_shape=shape, perm=None, note=why)
    return plan


def _cannot_convert(dset: Any) -> str:
    h5py = _h5py()
    if dset.dtype.hasobject:
        return "variable-length or reference data: not image data kmx-tune can transpose"
    dcpl = dset.id.get_create_plist()
    if dcpl.get_external_count():
        return (
            "its data lives in external raw files (H5Pset_external): converting it would "
            "overwrite them; copy the data into the HDF5 file first"
        )
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        return "a virtual dataset (its data lives in other files): convert those files instead"
    return ""


def _plans(f: Any, opts: Options) -> list[tuple[L.ArrayPlan, Any]]:
    h5py = _h5py()
    found: list[tuple[L.ArrayPlan, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append((_plan_dataset(name, obj, opts), obj))

    f.visititems(visit)
    return found


def _changes(plan: L.ArrayPlan) -> bool:
    return plan.action in (L.TRANSPOSE, L.ADD_CHANNEL_AXIS)


def convert_h5_data(
    src: Path, final: Path, opts: Options, progress: Progress | None
) -> FileOutcome:
    t0 = time.perf_counter()
    h5py = _h5py()
    size = src.stat().st_size
    with _reading(str(src)), h5py.File(src, "r") as f:
        found = _plans(f, opts)
    plans = tuple(p for p, _ in found)
    check_keys(src, [p.name for p in plans], opts)
    if any(p.action == L.REFUSE for p in plans):
        raise RefusedError(src, plans)
    planned = FileOutcome(str(src), PLANNED, plans, str(final), bytes_in=size)
    if not any(_changes(p) for p in plans):
        return dataclasses.replace(
            planned, status=NOTHING_TO_DO, output=None, message="nothing to convert"
        )
    if opts.dry_run:
        return dry_run(planned, src, final, opts)
    removed = prepare_output(src, final, opts, size + (1 << 20))
    written = _write(src, final, {p.name: p for p in plans if _changes(p)}, opts, progress)
    return converted(planned, written, t0, opts, removed)


# -- writing --------------------------------------------------------------------------


@dataclass
class _Copier:
    """One file being written: the converted datasets by path, the objects already
    written (hard links to them become hard links), progress."""

    fin: Any
    fout: Any
    todo: dict[str, L.ArrayPlan]
    opts: Options
    progress: Progress | None
    total: int
    done: int = 0

    def __post_init__(self) -> None:
        self.seen: dict[Any, str] = {}

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)


def _write(
    src: Path, final: Path, todo: dict[str, L.ArrayPlan], opts: Options, progress: Progress | None
) -> int:
    h5py = _h5py()
    with open_temp(final) as tmp:
        with (
            _reading(str(src)),
            h5py.File(src, "r", rdcc_nbytes=_READ_CACHE_MAX, rdcc_nslots=10007) as fin,
        ):
            total = sum(math.prod(p.shape) * fin[p.name].dtype.itemsize for p in todo.values())
            with _writing(final):
                fout = h5py.File(tmp.path, "w", libver=fin.libver)
                try:
                    copier = _Copier(fin, fout, todo, opts, progress, total)
                    _copy_group(copier, fin, fout, "")
                finally:
                    fout.close()
        with _writing(final):
            os.fsync(tmp.fd)
        written = os.fstat(tmp.fd).st_size
        verify_h5(src, tmp.path, todo, full=opts.verify, where=str(final))
        publish(tmp.path, src, final, opts)
    return written


def _copy_attrs(src: Any, dst: Any) -> None:
    """Every attribute, with its HDF5 type (fixed or variable-length strings stay so)."""
    for name in src.attrs:
        aid = src.attrs.get_id(name)
        dst.attrs.create(name, src.attrs[name], shape=aid.shape, dtype=aid.dtype)


def _copy_group(c: _Copier, gin: Any, gout: Any, prefix: str) -> None:
    h5py = _h5py()
    _copy_attrs(gin, gout)
    for name in gin:
        link = gin.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink):
            gout[name] = h5py.SoftLink(link.path)
            continue
        if isinstance(link, h5py.ExternalLink):
            gout[name] = h5py.ExternalLink(link.filename, link.path)
            continue
        obj = gin[name]
        path = prefix + name
        first = c.seen.get(obj.id)
        if first is not None:  # a second hard link to an object already written
            gout[name] = c.fout[first]
            continue
        c.seen[obj.id] = path
        if isinstance(obj, h5py.Group) and any(k.startswith(path + "/") for k in c.todo):
            gcpl = obj.id.get_create_plist()
            sub = h5py.Group(h5py.h5g.create(gout.id, name.encode(), gcpl=gcpl))
            _copy_group(c, obj, sub, path + "/")
        elif path in c.todo:
            _convert_dataset(c, obj, gout, name, c.todo[path])
        else:
            gin.copy(obj, gout, name=name)  # H5Ocopy: data, filters, attributes as they are


def _out_chunks(out_shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Whole samples per chunk, about CHUNK_TARGET bytes: a channels_first batch read
    then decompresses only the samples it needs."""
    sample = math.prod(out_shape[1:]) * itemsize
    rows = max(1, min(out_shape[0] or 1, CHUNK_TARGET // max(1, sample)))
    return (rows, *(max(1, n) for n in out_shape[1:]))


def _maxshape(dset: Any, plan: L.ArrayPlan, to: str) -> tuple[int | None, ...] | None:
    """The source's maxshape (a resizable dataset), in the output's axis order."""
    if dset.maxshape is None or tuple(dset.maxshape) == tuple(plan.shape):
        return None
    ms: tuple[Any, ...] = tuple(dset.maxshape)
    if plan.action == L.TRANSPOSE:
        assert plan.perm is not None
        return tuple(ms[a] for a in plan.perm)
    return L.with_channel_axis(ms, to)


def _convert_dataset(c: _Copier, dset: Any, gout: Any, name: str, plan: L.ArrayPlan) -> None:
    h5py = _h5py()
    out_shape = plan.out_shape
    dcpl = dset.id.get_create_plist()
    chunked = dcpl.get_layout() == h5py.h5d.CHUNKED
    if chunked:
        dcpl.set_chunk(_out_chunks(out_shape, dset.dtype.itemsize))
    maxshape = _maxshape(dset, plan, c.opts.to)
    if maxshape is not None:
        space = h5py.h5s.create_simple(
            out_shape, tuple(h5py.h5s.UNLIMITED if m is None else m for m in maxshape)
        )
    else:
        space = h5py.h5s.create_simple(out_shape)
    dsid = h5py.h5d.create(gout.id, name.encode(), dset.id.get_type(), space, dcpl=dcpl)
    out = h5py.Dataset(dsid)
    _copy_attrs(dset, out)
    _stream(c, dset, out, plan)


def _block_rows(dset: Any, out: Any, chunk_bytes: int) -> int:
    """Rows per block: about ``chunk_bytes``, a whole number of output chunks, and at
    least one source chunk's rows when the source is chunked."""
    sample = max(1, math.prod(dset.shape[1:]) * dset.dtype.itemsize)
    rows = max(1, chunk_bytes // sample)
    if out.chunks:
        k = out.chunks[0]
        rows = max(k, rows // k * k)
    if dset.chunks:
        rows = max(rows, dset.chunks[0])
    return min(rows, max(1, dset.shape[0]))


def _stream(c: _Copier, dset: Any, out: Any, plan: L.ArrayPlan) -> None:
    """Rows of ``dset``, a block at a time, transposed (or given their channel axis)
    into ``out``. A reader thread fills one input buffer while the other is transposed;
    the source and output buffers are allocated once."""
    n = dset.shape[0]
    if n == 0:
        return
    level = _deflate_only(out)
    rows = _block_rows(dset, out, c.opts.chunk_bytes)
    in_bufs = [np.empty((rows, *dset.shape[1:]), dset.dtype) for _ in range(2)]
    out_buf = np.empty((rows, *plan.out_shape[1:]), dset.dtype)
    free: queue.Queue[int] = queue.Queue()
    ready: queue.Queue[tuple[int, int, int] | BaseException | None] = queue.Queue()
    for i in range(2):
        free.put(i)
    stop = threading.Event()

    def reader() -> None:
        try:
            for start in range(0, n, rows):
                stop_at = min(n, start + rows)
                slot = free.get()
                if stop.is_set():
                    return
                rows_sel, buf_sel = np.s_[start:stop_at], np.s_[: stop_at - start]
                dset.read_direct(in_bufs[slot], source_sel=rows_sel, dest_sel=buf_sel)
                ready.put((slot, start, stop_at))
            ready.put(None)
        except BaseException as exc:  # handed to the main thread, which raises it
            ready.put(exc)

    thread = threading.Thread(target=reader, name="kmx-h5-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                with _reading(f"{c.fin.filename}[{plan.name}]"):
                    raise item
            slot, start, stop_at = item
            k = stop_at - start
            src_rows = in_bufs[slot][:k]
            if plan.action == L.TRANSPOSE:
                assert plan.perm is not None
                copy_block(out_buf[:k], src_rows.transpose(plan.perm))
            else:
                out_buf[:k] = src_rows.reshape(out_buf[:k].shape)
            free.put(slot)
            if level is None:
                out.write_direct(out_buf, source_sel=np.s_[:k], dest_sel=np.s_[start:stop_at])
            else:
                _write_deflated(out, out_buf, k, start, level)
            c.advance(out_buf[:k].nbytes)
    finally:
        stop.set()
        free.put(0)
        free.put(1)
        thread.join()


def _deflate_only(out: Any) -> int | None:
    """The gzip level when the output's only filter is gzip (HDF5's deflate): its chunks
    are then compressed here, on all cores, and written as they are; else None."""
    h5py = _h5py()
    dcpl = out.id.get_create_plist()
    if dcpl.get_layout() != h5py.h5d.CHUNKED or dcpl.get_nfilters() != 1:
        return None
    code, _flags, values, _name = dcpl.get_filter(0)
    if code != h5py.h5z.FILTER_DEFLATE or out.dtype.hasobject:
        return None
    return int(values[0]) if values else 6


_ZPOOL: ThreadPoolExecutor | None = None


def _compressor(level: int) -> Callable[[Any], bytes]:
    """zlib-format compression at about HDF5's gzip ``level``, with the fastest library
    at hand (:mod:`.deflate`): python-isal has levels 0-3, mapped from 0-9."""
    be = backend()
    if be.name == "isal":
        level = 0 if level == 0 else 1 if level <= 2 else 2 if level <= 5 else 3
    compress = be.module.compress

    def run(data: Any) -> bytes:
        return bytes(compress(data, level))

    return run


def _write_deflated(out: Any, buf: np.ndarray, k: int, start: int, level: int) -> None:
    """Rows ``buf[:k]`` (a whole number of output chunks, but for the dataset's last
    one) into ``out`` at row ``start``: each chunk deflated on a thread (the libraries
    let go of the GIL), then written with ``write_direct_chunk``: what HDF5's own gzip
    filter would store (a zlib stream per chunk), made on all cores."""
    global _ZPOOL
    if _ZPOOL is None:
        _ZPOOL = ThreadPoolExecutor(
            max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="kmx-zlib"
        )
    rows = out.chunks[0]
    compress = _compressor(level)
    pieces = []
    for first in range(0, k, rows):
        chunk = buf[first : first + rows]
        if chunk.shape[0] < rows:  # the edge chunk: stored full size, the rest unused
            padded = np.full((rows, *buf.shape[1:]), out.fillvalue, buf.dtype)
            padded[: chunk.shape[0]] = chunk
            chunk = padded
        data = np.ascontiguousarray(chunk).reshape(-1).view(np.uint8)
        pieces.append((start + first, _ZPOOL.submit(compress, data)))
    for row, future in pieces:
        offset = (row,) + (0,) * (len(buf.shape) - 1)
        out.id.write_direct_chunk(offset, future.result())


__all__ = ["CHUNK_TARGET", "convert_h5_data"]
