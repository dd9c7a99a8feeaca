"""Converting one .npz file (``np.savez`` or ``np.savez_compressed``): plan every member,
write a new zip beside the output, check it against the source, then give it its
final name.

Members keep their order, names, compression, timestamps, comments and extra fields;
members that do not change are copied byte for byte; the archive comment and any bytes
around the archive are kept. A member with bytes after its array is refused rather than
rewritten without them. The zip format itself is :mod:`.zipio`'s (reading) and
:mod:`.zipout`'s (writing); reading a member's array for the transpose is :mod:`.sources`'.
"""

from __future__ import annotations

import dataclasses
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    member_trailing_note,
    open_regular,
    prepare_output,
    publish,
    verify_data,
)
from kmx_tune.convert.deflate import Backend, backend, crc32, deflate_chunks
from kmx_tune.convert.kernel import (
    CHUNK_BYTES,
    MappedSource,
    Source,
    copy_block,
    raw_permutation,
    source_blocks,
)
from kmx_tune.convert.npyio import NpyHeader, build_header
from kmx_tune.convert.sources import open_member
from kmx_tune.convert.writer import DirectSink, open_temp
from kmx_tune.convert.zipio import Archive, InflateStream, Member, corrupt, raw_name, read_archive
from kmx_tune.convert.zipout import ZipOut
from kmx_tune.errors import KmxError

_DEFLATE_CHUNK = 4 << 20


@dataclass(frozen=True)
class _Job:
    """One .npz being converted: the source, open as ``fd``; where the output goes."""

    src: Path
    fd: int
    be: Backend
    final: Path
    opts: Options
    archive: Archive
    size: int  # of the source


def convert_npz(src: Path, final: Path, opts: Options, progress: Progress | None) -> FileOutcome:
    t0 = time.perf_counter()
    be = backend()
    fd, size = open_regular(src)
    try:
        archive = read_archive(src, fd, size, be)
        members = archive.members
        check_keys(src, [m.name for m in members], opts)
        plans = tuple(_plan(m, opts) for m in members)
        if any(p.action == L.REFUSE for p in plans):
            raise RefusedError(src, plans)
        planned = FileOutcome(str(src), PLANNED, plans, str(final), bytes_in=size)
        if not any(_changes(p) for p in plans):
            return dataclasses.replace(
                planned, status=NOTHING_TO_DO, output=None, message="nothing to convert"
            )
        if opts.dry_run:
            return dry_run(planned, src, final, opts)
        removed = prepare_output(src, final, opts, _space_needed(archive, plans))
        written = _write(_Job(src, fd, be, final, opts, archive, size), plans, progress)
    finally:
        os.close(fd)
    return converted(planned, written, t0, opts, removed)


def _plan(m: Member, opts: Options) -> L.ArrayPlan:
    if m.header is None:
        return L.ArrayPlan(m.name, (), "", L.NOT_IMAGE, L.COPY, (), "not an .npy member: copied")
    h = m.header
    plan = L.plan_array(
        m.name,
        h.shape,
        h.dtype_str,
        opts.to,
        keys=opts.keys,
        add_channel_axis=opts.add_channel_axis,
        has_object=h.dtype.hasobject,
    )
    if _changes(plan) and m.trailing:
        # rewriting the member would drop what follows its array; copied, it keeps it
        note = member_trailing_note(m.trailing)
        return dataclasses.replace(plan, action=L.REFUSE, out_shape=plan.shape, note=note)
    return plan


def _changes(plan: L.ArrayPlan) -> bool:
    return plan.action in (L.TRANSPOSE, L.ADD_CHANNEL_AXIS)


def _perms(h: NpyHeader, p: L.ArrayPlan) -> tuple[int, ...]:
    perm = p.perm or tuple(range(len(h.shape)))
    return raw_permutation(perm, h.fortran_order)


def _space_needed(archive: Archive, plans: tuple[L.ArrayPlan, ...]) -> int:
    need = 4096 + archive.prefix + archive.trailing + len(archive.comment)
    for m, p in zip(archive.members, plans):
        need += m.info.compress_size + 256 + len(m.info.extra) + len(m.local_extra)
        need += len(m.info.comment)
        if _changes(p) and m.header is not None:
            # a spilled member needs room for its inflated copy too
            need += m.header.nbytes if m.deflated else 0
    return need


def _write(job: _Job, plans: tuple[L.ArrayPlan, ...], progress: Progress | None) -> int:
    """Write, check and publish the output; returns its size."""
    members, archive = job.archive.members, job.archive
    total = sum(m.header.nbytes for m, p in zip(members, plans) if _changes(p) and m.header)
    done = [0]

    def advance(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], total)

    with open_temp(job.final) as tmp:
        sink = DirectSink(tmp.fd, job.final, job.opts.chunk_bytes)
        try:
            zout = ZipOut(sink)
            _copy_range(sink, job.fd, 0, archive.prefix, str(job.src))
            for m, p in zip(members, plans):
                if _changes(p):
                    _write_converted(job, zout, m, p, advance)
                else:
                    _copy_member(zout, job.fd, m)
            zout.close(archive.comment)
            tail = job.size - archive.trailing
            _copy_range(sink, job.fd, tail, archive.trailing, str(job.src))
            written = sink.close()
        except BaseException:
            sink.abort()
            raise
        _verify(job, tmp.path, plans, full=job.opts.verify)
        publish(tmp.path, job.src, job.final, job.opts)
    return written


def _copy_member(zout: ZipOut, fd: int, m: Member) -> None:
    info = m.info
    e = zout.begin(
        info,
        info.compress_type,
        known=(info.CRC, info.compress_size, info.file_size),
        local_extra=m.local_extra,
    )
    _copy_range(zout.sink, fd, m.data_offset, info.compress_size, info.orig_filename)
    zout.end(e, info.CRC, info.compress_size, info.file_size)


def _copy_range(sink: DirectSink, fd: int, pos: int, left: int, where: str) -> None:
    """``left`` bytes of the file open as ``fd``, from ``pos``, into the sink as they are."""
    while left:
        n = min(left, sink.chunk)
        got = os.preadv(fd, [sink.reserve(n)], pos)
        if got != n:
            raise corrupt(where, "short read")
        sink.commit(n)
        pos += n
        left -= n


def _write_converted(
    job: _Job, zout: ZipOut, m: Member, p: L.ArrayPlan, advance: Callable[[int], None]
) -> None:
    h = m.header
    assert h is not None
    out_header = build_header(h.dtype, p.out_shape, h.fortran_order)
    usize = len(out_header) + h.nbytes
    rperm = _perms(h, p)
    where = f"{job.src}[{m.info.orig_filename}]"
    with open_member(job.fd, m, rperm, job.be, job.final, where) as source:
        if m.deflated:
            e = zout.begin(
                m.info, zipfile.ZIP_DEFLATED, usize_hint=usize, local_extra=m.local_extra
            )
            crc, csize = _deflate(zout.sink, out_header, source, rperm, job, advance)
        else:
            e = zout.begin(m.info, zipfile.ZIP_STORED, usize_hint=usize, local_extra=m.local_extra)
            crc = _store(zout.sink, out_header, source, rperm, job.opts.chunk_bytes, advance)
            csize = usize
    zout.end(e, crc, csize, usize)


def _store(
    sink: DirectSink,
    out_header: bytes,
    source: Source,
    rperm: tuple[int, ...],
    chunk_bytes: int,
    advance: Callable[[int], None],
) -> int:
    """A stored member's data, transposed straight into the sink; returns its CRC."""
    crc = crc32(out_header)
    sink.write(out_header)
    for block in source_blocks(source, rperm, chunk_bytes):
        n = block.nbytes
        view = sink.reserve(n)
        copy_block(np.frombuffer(view, source.dtype).reshape(block.shape), block)
        crc = crc32(view, crc)
        view.release()
        sink.commit(n)
        advance(n)
    return crc


def _deflate(
    sink: DirectSink,
    out_header: bytes,
    source: Source,
    rperm: tuple[int, ...],
    job: _Job,
    advance: Callable[[int], None],
) -> tuple[int, int]:
    """A deflated member's data, transposed and deflated into the sink; returns the CRC
    of the uncompressed data and the compressed size."""
    crc = crc32(out_header)

    def chunks() -> Iterator[bytes | memoryview]:
        nonlocal crc
        yield out_header
        # smaller pieces for the deflate threads: several are in flight at once
        for block in source_blocks(source, rperm, min(job.opts.chunk_bytes, _DEFLATE_CHUNK)):
            owned = np.array(block, order="C", copy=True).reshape(-1).view(np.uint8)
            crc = crc32(owned, crc)
            advance(owned.size)
            yield memoryview(owned)  # type: ignore[arg-type]  # numpy arrays are buffers

    csize = 0
    for piece in deflate_chunks(chunks(), job.be):
        sink.write(piece)
        csize += len(piece)
    return crc, csize


def _verify(job: _Job, path: Path, plans: tuple[L.ArrayPlan, ...], *, full: bool) -> None:
    """Always: the zip directory (every member's name as stored, its comment and extra
    fields, the archive comment), every member's .npy header, and sampled rows of stored
    members. ``full``: every byte of every member, against the source."""
    where = str(job.final)
    mismatch = KmxError(f"{where}: the output does not match the source; nothing was replaced")
    members = job.archive.members
    fd, size = open_regular(path)
    try:
        out = read_archive(path, fd, size, job.be)
        if len(out.members) != len(members) or (out.comment, out.prefix, out.trailing) != (
            job.archive.comment,
            job.archive.prefix,
            job.archive.trailing,
        ):
            raise mismatch
        for m, o, p in zip(members, out.members, plans):
            if raw_name(o.info) != raw_name(m.info) or (o.info.comment, o.info.date_time) != (
                m.info.comment,
                m.info.date_time,
            ):
                raise mismatch
            if not _changes(p):
                if (o.info.CRC, o.info.compress_size) != (m.info.CRC, m.info.compress_size):
                    raise mismatch
                if full:
                    _compare_raw(
                        job.fd, m.data_offset, fd, o.data_offset, m.info.compress_size, mismatch
                    )
            else:
                _verify_converted(job, fd, m, o, p, full=full, mismatch=mismatch)
    finally:
        os.close(fd)


def _verify_converted(
    job: _Job, fd: int, m: Member, o: Member, p: L.ArrayPlan, *, full: bool, mismatch: KmxError
) -> None:
    """A converted member ``o`` of the output (open as ``fd``) against its source ``m``."""
    where = str(job.final)
    h, oh = m.header, o.header
    assert h is not None
    if (
        oh is None
        or oh.dtype != h.dtype
        or oh.shape != p.out_shape
        or oh.fortran_order != h.fortran_order
        or o.info.file_size != oh.data_offset + oh.nbytes
        or o.deflated != m.deflated
    ):
        raise mismatch
    rperm = _perms(h, p)
    out_raw = tuple(h.raw_shape[a] for a in rperm)
    if not o.deflated:
        got = MappedSource(fd, o.data_offset + oh.data_offset, out_raw, h.dtype)
        try:
            with open_member(job.fd, m, rperm, job.be, job.final, where, False) as source:
                verify_data(source, got, rperm, full=full, where=where)
        finally:
            got.close()
    elif full:
        stream = InflateStream(fd, o.data_offset, o.info, job.be, where)
        stream.read(oh.data_offset)
        with open_member(job.fd, m, rperm, job.be, job.final, where, False) as source:
            for block in source_blocks(source, rperm, CHUNK_BYTES):
                expect = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
                if not np.array_equal(stream.read(expect.size), expect):
                    raise mismatch
        stream.finish()


def _compare_raw(fa: int, oa: int, fb: int, ob: int, n: int, mismatch: KmxError) -> None:
    pos = 0
    while pos < n:
        k = min(n - pos, 8 << 20)
        if os.pread(fa, k, oa + pos) != os.pread(fb, k, ob + pos):
            raise mismatch
        pos += k


__all__ = ["convert_npz"]
