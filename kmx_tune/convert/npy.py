"""Converting one .npy file: read its header, plan its array, stream the transpose
into a temporary file beside the output, check it, then give it its final name.

A .npy holds one array; bytes after it (more ``np.save`` calls to the same file, or
anything else) are never dropped: the file is refused, saying what is there."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

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
    open_regular,
    prepare_output,
    publish,
    read_npy_header,
    trailing_data,
    verify_data,
)
from kmx_tune.convert.kernel import (
    MappedSource,
    ReadSource,
    copy_block,
    raw_permutation,
    source_blocks,
)
from kmx_tune.convert.npyio import NpyHeader, build_header
from kmx_tune.convert.writer import DirectSink, open_temp
from kmx_tune.errors import KmxError


def convert_npy(src: Path, final: Path, opts: Options, progress: Progress | None) -> FileOutcome:
    t0 = time.perf_counter()
    fd, size = open_regular(src)  # open until the end: the data read is this file's
    try:
        header = read_npy_header(fd, size, str(src))
        check_keys(src, [src.stem], opts)
        plan = L.plan_array(
            src.stem,
            header.shape,
            header.dtype_str,
            opts.to,
            keys=opts.keys,
            add_channel_axis=opts.add_channel_axis,
            has_object=header.dtype.hasobject,
        )
        if plan.action == L.REFUSE:
            raise RefusedError(src, [plan])
        planned = FileOutcome(str(src), PLANNED, (plan,), str(final), bytes_in=size)
        if plan.action in (L.SKIP, L.COPY):
            return dataclasses.replace(
                planned, status=NOTHING_TO_DO, output=None, message=plan.note
            )
        extra = trailing_data(fd, size, header, str(src))
        if extra:
            raise KmxError(extra)
        if opts.dry_run:
            return dry_run(planned, src, final, opts)
        out_header = build_header(header.dtype, plan.out_shape, header.fortran_order)
        removed = prepare_output(src, final, opts, len(out_header) + header.nbytes)
        source = ReadSource(fd, header.data_offset, header.raw_shape, header.dtype, str(src))
        try:
            written = _write(source, src, final, header, plan, out_header, opts, progress)
        finally:
            source.close()
    finally:
        os.close(fd)
    return converted(planned, written, t0, opts, removed)


def _write(
    source: ReadSource,
    src: Path,
    final: Path,
    header: NpyHeader,
    plan: L.ArrayPlan,
    out_header: bytes,
    opts: Options,
    progress: Progress | None,
) -> int:
    """Write, check and publish the output; returns its size."""
    perm = plan.perm or tuple(range(len(header.shape)))
    rperm = raw_permutation(perm, header.fortran_order)
    with open_temp(final) as tmp:
        sink = DirectSink(tmp.fd, final, opts.chunk_bytes)
        try:
            sink.write(out_header)
            _transpose_into(sink, source, rperm, opts.chunk_bytes, progress)
            written = sink.close()
        except BaseException:
            sink.abort()
            raise
        out_raw = tuple(header.raw_shape[a] for a in rperm)
        out = MappedSource(tmp.path, len(out_header), out_raw, header.dtype)
        try:
            check_npy_output(tmp.path, header, plan.out_shape, written, str(final))
            verify_data(source, out, rperm, full=opts.verify, where=str(final))
        finally:
            out.close()
        publish(tmp.path, src, final, opts)
    return written


def _transpose_into(
    sink: DirectSink,
    source: ReadSource,
    rperm: tuple[int, ...],
    chunk_bytes: int,
    progress: Progress | None,
) -> None:
    """The array data, transposed block by block straight into the sink's buffers."""
    total = math.prod(source.raw_shape) * source.dtype.itemsize
    done = 0
    for block in source_blocks(source, rperm, chunk_bytes):
        n = block.nbytes
        dst = np.frombuffer(sink.reserve(n), source.dtype).reshape(block.shape)
        copy_block(dst, block)
        del dst
        sink.commit(n)
        done += n
        if progress:
            progress(done, total)


def check_npy_output(
    path: Path, src: NpyHeader, out_shape: tuple[int, ...], size: int, where: str
) -> None:
    """The cheap check that always runs: header, dtype, shape and size as planned."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_npy_header(fd, os.fstat(fd).st_size, where)
        actual = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if (
        got.dtype != src.dtype
        or got.shape != tuple(out_shape)
        or got.fortran_order != src.fortran_order
        or actual != size
        or size != got.data_offset + got.nbytes
    ):
        raise KmxError(f"{where}: the written file does not match the plan; nothing was replaced")


__all__ = ["check_npy_output", "convert_npy"]
