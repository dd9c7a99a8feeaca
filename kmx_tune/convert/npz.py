""".npz files: zip archives of .npy members, stored (``np.savez``) or deflated
(``np.savez_compressed``).

Reading: the central directory comes from :mod:`zipfile` (which never unpickles);
stored member data is mapped straight from the file at its offset, deflated member
data is inflated as a stream, a window of rows at a time, its CRC checked at the end.
Writing: our own small zip writer streams through the :class:`DirectSink`, with
data descriptors (flag bit 3) for the CRC and sizes known only at the end, and
zip64 records where sizes or offsets need them. Members keep their order, names,
compression and timestamps; members that do not change are copied byte for byte.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmx_tune import fsio
from kmx_tune.convert import layout as L
from kmx_tune.convert.core import (
    CONVERTED,
    FAILED,
    NOTHING_TO_DO,
    PLANNED,
    FileResult,
    Options,
    Progress,
    _check_target,
    _open_regular,
    _replace,
    check_keys,
    refusal_message,
    verify_data,
)
from kmx_tune.convert.deflate import Backend, backend, crc32, deflate_chunks, inflater
from kmx_tune.convert.kernel import MappedSource, copy_block, raw_permutation, source_blocks
from kmx_tune.convert.npyio import (
    PREFIX_LEN,
    FormatError,
    NpyHeader,
    build_header,
    header_length,
    parse_header,
)
from kmx_tune.convert.writer import (
    DirectSink,
    check_free_space,
    open_temp,
    publish_output,
)
from kmx_tune.errors import KmxError

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IBBBBHHHHIIIHHHHHII")
_LOCAL_SIG, _CENTRAL_SIG, _DESC_SIG = 0x04034B50, 0x02014B50, 0x08074B50
_EOCD_SIG, _EOCD64_SIG, _LOC64_SIG = 0x06054B50, 0x06064B50, 0x07064B50
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x08, 0x800
_U32 = 0xFFFFFFFF
_ZIP64_AT = 0xF0000000  # deflate can grow incompressible data a little: switch to zip64 early
_INFLATE_IN = 1 << 20
_INFLATE_OUT = 4 << 20
_DEFLATE_CHUNK = 4 << 20
_STREAM_ROW_LIMIT = 32 << 20  # larger rows (or Fortran order) are inflated to a temp file first

_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    ValueError,
    EOFError,
    struct.error,
    NotImplementedError,
    KeyError,
    IndexError,
    OverflowError,
    UnicodeDecodeError,
    TypeError,
)


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    data_offset: int  # where the member's (compressed) data starts in the zip file
    header: NpyHeader | None  # None: not an .npy member, copied as it is

    @property
    def name(self) -> str:
        n = self.info.filename
        return n[:-4] if n.endswith(".npy") else n

    @property
    def deflated(self) -> bool:
        return self.info.compress_type == zipfile.ZIP_DEFLATED


def _corrupt(where: str, what: str) -> FormatError:
    return FormatError(f"{where}: {what}; the .npz file is corrupt or truncated")


def read_members(path: Path, fd: int, size: int, be: Backend) -> list[Member]:
    where = str(path)
    try:
        with open(path, "rb") as fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        if os.pread(fd, 6, 0) == b"\x93NUMPY":
            raise FormatError(
                f"{where}: this is a single .npy array, not an .npz (zip); rename it to .npy"
            ) from None
        raise FormatError(f"{where}: not a valid .npz (zip) file: {exc}") from None
    members: list[Member] = []
    for info in infos:
        mwhere = f"{where}[{info.filename}]"
        if info.flag_bits & 0x1:
            raise FormatError(f"{mwhere}: encrypted zip members are not supported")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise FormatError(
                f"{mwhere}: compression method {info.compress_type} is not supported "
                "(only stored and deflated, as numpy writes)"
            )
        if not 0 <= info.header_offset <= size - _LOCAL.size:
            raise _corrupt(mwhere, "the member's offset lies outside the file")
        local = os.pread(fd, _LOCAL.size, info.header_offset)
        if len(local) < _LOCAL.size or _LOCAL.unpack(local)[0] != _LOCAL_SIG:
            raise _corrupt(mwhere, "bad local zip header")
        fields = _LOCAL.unpack(local)
        data_offset = info.header_offset + _LOCAL.size + fields[9] + fields[10]
        if data_offset + info.compress_size > size:
            raise _corrupt(mwhere, "member data runs past the end of the file")
        header = None
        if info.filename.endswith(".npy") or _member_prefix(
            fd, data_offset, info, 6, be, mwhere
        ).startswith(b"\x93NUMPY"):
            prefix = _member_prefix(fd, data_offset, info, PREFIX_LEN, be, mwhere)
            _, hlen = header_length(prefix, mwhere)
            header = parse_header(_member_prefix(fd, data_offset, info, hlen, be, mwhere), mwhere)
            need = header.data_offset + header.nbytes
            too_big = need > info.file_size or (not_deflated(info) and need > info.compress_size)
            if too_big and not header.dtype.hasobject:
                raise FormatError(
                    f"{mwhere}: the header claims {need} bytes but the member holds "
                    f"{info.file_size}; the file is truncated or corrupt"
                )
        members.append(Member(info, data_offset, header))
    return members


def not_deflated(info: zipfile.ZipInfo) -> bool:
    return info.compress_type != zipfile.ZIP_DEFLATED


def _member_prefix(
    fd: int, offset: int, info: zipfile.ZipInfo, n: int, be: Backend, where: str
) -> bytes:
    """The first ``n`` bytes of a member's uncompressed data (fewer if it is shorter)."""
    if not_deflated(info):
        return os.pread(fd, min(n, info.compress_size), offset)
    d: Any = inflater(be)
    out = b""
    pos, end = offset, offset + info.compress_size
    try:
        while len(out) < n and pos < end:
            data = os.pread(fd, min(1 << 16, end - pos), pos)
            if not data:
                break
            pos += len(data)
            out += d.decompress(data, n - len(out))
            if d.eof:
                break
    except be.errors as exc:
        raise _corrupt(where, f"cannot inflate the member ({exc})") from None
    return out[:n]


class InflateStream:
    """A deflated member's uncompressed bytes, read front to back in bounded memory;
    :meth:`finish` checks the length and CRC against the zip directory."""

    def __init__(self, fd: int, offset: int, info: zipfile.ZipInfo, be: Backend, where: str):
        self._fd, self._pos, self._end = fd, offset, offset + info.compress_size
        self._info, self._where = info, where
        self._d: Any = inflater(be)
        self._errors = be.errors
        self._buf = np.empty(8 << 20, np.uint8)
        self._lo = self._hi = 0
        self._crc = 0
        self._total = 0

    def _inflate_some(self) -> bytes:
        tail = self._d.unconsumed_tail
        if tail:
            data = tail
        else:
            if self._d.eof or self._pos >= self._end:
                raise _corrupt(self._where, "the member's data ends early")
            data = os.pread(self._fd, min(_INFLATE_IN, self._end - self._pos), self._pos)
            if not data:
                raise _corrupt(self._where, "the member's data ends early")
            self._pos += len(data)
        try:
            out = self._d.decompress(data, _INFLATE_OUT)
        except self._errors as exc:
            raise _corrupt(self._where, f"cannot inflate the member ({exc})") from None
        self._crc = crc32(out, self._crc)
        self._total += len(out)
        return bytes(out)

    def read(self, n: int) -> np.ndarray:
        """The next ``n`` bytes, as a uint8 view that is valid until the next call."""
        while self._hi - self._lo < n:
            piece = self._inflate_some()
            if self._hi + len(piece) > self._buf.size:
                keep = self._hi - self._lo
                if keep + len(piece) > self._buf.size:
                    grown = np.empty(max(2 * self._buf.size, keep + len(piece)), np.uint8)
                    grown[:keep] = self._buf[self._lo : self._hi]
                    self._buf = grown
                else:
                    self._buf[:keep] = self._buf[self._lo : self._hi]
                self._lo, self._hi = 0, keep
            self._buf[self._hi : self._hi + len(piece)] = np.frombuffer(piece, np.uint8)
            self._hi += len(piece)
        view = self._buf[self._lo : self._lo + n]
        self._lo += n
        return view

    def finish(self) -> None:
        while not self._d.eof:
            self._lo = self._hi = 0
            self._inflate_some()
        if self._total != self._info.file_size or self._crc != self._info.CRC:
            raise _corrupt(self._where, "CRC or length check failed")


class InflateSource:
    """A :class:`kernel.Source` over a deflated member: rows inflated on demand, in order."""

    def __init__(self, stream: InflateStream, header: NpyHeader):
        self.raw_shape = header.raw_shape
        self.dtype = header.dtype
        self._stream = stream
        self._row_bytes = math.prod(self.raw_shape[1:]) * self.dtype.itemsize
        self._next = 0
        self._cached: tuple[int, int, np.ndarray] | None = None
        stream.read(header.data_offset)  # skip the .npy header

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self._cached and self._cached[:2] == (start, stop):
            return self._cached[2]
        if start < self._next:
            raise AssertionError("InflateSource reads forward only")
        if start > self._next:
            self._stream.read((start - self._next) * self._row_bytes)
        raw = self._stream.read((stop - start) * self._row_bytes)
        arr = raw.view(self.dtype).reshape((stop - start, *self.raw_shape[1:]))
        self._next = stop
        self._cached = (start, stop, arr)
        return arr

    def release(self) -> None:
        pass

    def finish(self) -> None:
        total = self.raw_shape[0] if self.raw_shape else 0
        if self._next < total:
            self._stream.read((total - self._next) * self._row_bytes)
        self._cached = None
        self._stream.finish()

    def close(self) -> None:
        self._cached = None


class CrcCheckedSource:
    """A stored member's mapped data whose CRC is checked as the rows go by (rows are
    read in order when the first axis stays first); :meth:`finish` compares it with
    the zip directory. Otherwise one sequential pass checks it before conversion."""

    def __init__(self, mapped: MappedSource, fd: int, m: Member, sequential: bool, where: str):
        assert m.header is not None
        self.raw_shape, self.dtype = mapped.raw_shape, mapped.dtype
        self._mapped, self._fd, self._m, self._where = mapped, fd, m, where
        self._data_end = m.data_offset + m.header.data_offset + m.header.nbytes
        self._sequential = sequential and bool(self.raw_shape)
        if self._sequential:
            self._crc = crc32(os.pread(fd, m.header.data_offset, m.data_offset))
            self._next = 0
        else:
            self._crc = _crc_range(fd, m.data_offset, self._data_end)
            self._next = self.raw_shape[0] if self.raw_shape else 0

    def rows(self, start: int, stop: int) -> np.ndarray:
        arr = self._mapped.rows(start, stop)
        if self._sequential and stop > self._next:
            fresh = self._mapped.rows(self._next, stop)
            self._crc = crc32(fresh.reshape(-1).view(np.uint8), self._crc)
            self._next = stop
        return arr

    def release(self) -> None:
        self._mapped.release()

    def finish(self) -> None:
        total = self.raw_shape[0] if self.raw_shape else 0
        if self._next < total:
            self.rows(self._next, total)
            self._mapped.release()
        crc = _crc_range(
            self._fd, self._data_end, self._m.data_offset + self._m.info.file_size, self._crc
        )
        if crc != self._m.info.CRC:
            raise _corrupt(self._where, "CRC check failed")


def _crc_range(fd: int, start: int, end: int, crc: int = 0) -> int:
    buf = bytearray(min(max(end - start, 0), 8 << 20))
    pos = start
    while pos < end:
        view = memoryview(buf)[: min(len(buf), end - pos)]
        n = os.preadv(fd, [view], pos)
        if n <= 0:
            break
        crc = crc32(view[:n], crc)
        pos += n
    return crc


# ---------------------------------------------------------------------------------
# writing


def _dos_time(dt: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    y, mo, d, h, mi, s = dt
    y = min(max(y, 1980), 2107)
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


@dataclass
class _Entry:
    name: bytes
    flags: int
    method: int
    dt: tuple[int, int, int, int, int, int]
    external_attr: int
    offset: int
    crc: int = 0
    csize: int = 0
    usize: int = 0
    zip64: bool = False


class ZipOut:
    """A zip writer that streams through a :class:`DirectSink` (never seeks)."""

    def __init__(self, sink: DirectSink) -> None:
        self.sink = sink
        self.entries: list[_Entry] = []

    def begin(
        self,
        info: zipfile.ZipInfo,
        method: int,
        *,
        known: tuple[int, int, int] | None = None,
        usize_hint: int = 0,
    ) -> _Entry:
        """Write a local header. ``known``: (crc, csize, usize) of a member copied as it
        is; otherwise they follow the data in a descriptor."""
        try:
            name, flags = info.filename.encode("ascii"), 0
        except UnicodeEncodeError:
            name, flags = info.filename.encode("utf-8"), _FLAG_UTF8
        big = max(usize_hint, known[1] if known else 0, known[2] if known else 0) >= _ZIP64_AT
        e = _Entry(name, flags, method, info.date_time, info.external_attr, self.sink.written)
        e.zip64 = big
        if known is None:
            e.flags |= _FLAG_DESCRIPTOR
            crc, csize, usize = 0, 0, 0
        else:
            crc, csize, usize = known
        extra = b""
        if big:
            extra = struct.pack("<HHQQ", 1, 16, usize, csize)
            csize = usize = _U32
        t, d = _dos_time(e.dt)
        self.sink.write(
            _LOCAL.pack(
                _LOCAL_SIG,
                45 if big else 20,
                e.flags,
                method,
                t,
                d,
                crc,
                csize,
                usize,
                len(name),
                len(extra),
            )
            + name
            + extra
        )
        if known:
            e.crc, e.csize, e.usize = known
        self.entries.append(e)
        return e

    def end(self, e: _Entry, crc: int, csize: int, usize: int) -> None:
        e.crc, e.csize, e.usize = crc, csize, usize
        if e.flags & _FLAG_DESCRIPTOR:
            if e.zip64:
                self.sink.write(struct.pack("<IIQQ", _DESC_SIG, crc, csize, usize))
            else:
                if max(csize, usize) >= _U32:
                    raise KmxError("a zip member grew past 4 GB unexpectedly; nothing was written")
                self.sink.write(struct.pack("<IIII", _DESC_SIG, crc, csize, usize))

    def close(self) -> None:
        start = self.sink.written
        for e in self.entries:
            z: list[int] = []
            usize, csize, offset = e.usize, e.csize, e.offset
            if usize >= _U32:
                z.append(usize)
                usize = _U32
            if csize >= _U32:
                z.append(csize)
                csize = _U32
            if offset >= _U32:
                z.append(offset)
                offset = _U32
            extra = struct.pack(f"<HH{len(z)}Q", 1, 8 * len(z), *z) if z else b""
            version = 45 if z or e.zip64 else 20
            t, d = _dos_time(e.dt)
            self.sink.write(
                _CENTRAL.pack(
                    _CENTRAL_SIG,
                    version,
                    3,
                    version,
                    0,
                    e.flags,
                    e.method,
                    t,
                    d,
                    e.crc,
                    csize,
                    usize,
                    len(e.name),
                    len(extra),
                    0,
                    0,
                    0,
                    e.external_attr,
                    offset,
                )
                + e.name
                + extra
            )
        size = self.sink.written - start
        count = len(self.entries)
        if count >= 0xFFFF or size >= _U32 or start >= _U32:
            eocd64 = self.sink.written
            self.sink.write(
                struct.pack("<IQHHIIQQQQ", _EOCD64_SIG, 44, 45, 45, 0, 0, count, count, size, start)
                + struct.pack("<IIQI", _LOC64_SIG, 0, eocd64, 1)
            )
            self.sink.write(
                struct.pack("<IHHHHIIH", _EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, _U32, _U32, 0)
            )
        else:
            self.sink.write(struct.pack("<IHHHHIIH", _EOCD_SIG, 0, 0, count, count, size, start, 0))


# ---------------------------------------------------------------------------------
# converting


def _plan(m: Member, opts: Options) -> L.ArrayPlan:
    if m.header is None:
        return L.ArrayPlan(m.name, (), "", L.NOT_IMAGE, L.COPY, (), "not an .npy member: copied")
    h = m.header
    return L.plan_array(
        m.name,
        h.shape,
        h.dtype_str,
        opts.to,
        keys=opts.keys,
        add_channel_axis=opts.add_channel_axis,
        has_object=h.dtype.hasobject,
    )


def _changes(plan: L.ArrayPlan) -> bool:
    return plan.action in (L.TRANSPOSE, L.ADD_CHANNEL_AXIS)


@contextlib.contextmanager
def _open_source(
    src_fd: int,
    m: Member,
    rperm: tuple[int, ...],
    be: Backend,
    final: Path,
    where: str,
    check: bool = True,
) -> Iterator[Any]:
    """A kernel Source for a member: mapped (stored), streamed (deflated), or inflated
    to an already-unlinked temp file beside the output (deflated, not streamable)."""
    h = m.header
    assert h is not None
    if not m.deflated:
        mapped = MappedSource(src_fd, m.data_offset + h.data_offset, h.raw_shape, h.dtype)
        try:
            if check:
                checked = CrcCheckedSource(
                    mapped, src_fd, m, rperm[0] == 0 if rperm else True, where
                )
                yield checked
                checked.finish()
            else:
                yield mapped
        finally:
            mapped.close()
        return
    row_bytes = math.prod(h.raw_shape[1:]) * h.dtype.itemsize if h.raw_shape else 0
    stream = InflateStream(src_fd, m.data_offset, m.info, be, where)
    if h.raw_shape and rperm[0] == 0 and row_bytes <= _STREAM_ROW_LIMIT:
        streamed = InflateSource(stream, h)
        try:
            yield streamed
            streamed.finish()
        finally:
            streamed.close()
        return
    spill = fsio.temp_name(final)
    sfd = os.open(spill, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(spill)  # nothing to clean up after a crash
    try:
        left = m.info.file_size
        while left:
            chunk = stream.read(min(left, _INFLATE_OUT))
            os.write(sfd, memoryview(chunk))  # type: ignore[arg-type]  # numpy arrays are buffers
            left -= chunk.size
        stream.finish()
        spilled = MappedSource(sfd, h.data_offset, h.raw_shape, h.dtype)
        try:
            yield spilled
        finally:
            spilled.close()
    except OSError as exc:
        raise KmxError(f"{final.parent}: cannot write a temporary file: {exc.strerror}") from None
    finally:
        os.close(sfd)


def convert_npz(src: Path, final: Path, opts: Options, progress: Progress | None) -> FileResult:
    t0 = time.perf_counter()
    be = backend()
    fd, size = _open_regular(src)
    try:
        members = read_members(src, fd, size, be)
        check_keys(src, [m.name for m in members], opts)
        plans = tuple(_plan(m, opts) for m in members)
        if any(p.action == L.REFUSE for p in plans):
            raise KmxError(refusal_message(src, plans))
        base = FileResult(str(src), PLANNED, plans, str(final), bytes_in=size)
        if not any(_changes(p) for p in plans):
            return _replace(base, status=NOTHING_TO_DO, output=None, message="nothing to convert")
        if opts.dry_run:
            return base
        _check_target(src, final, opts)
        removed = fsio.clean_stale_temps(final)
        need = 4096
        for m, p in zip(members, plans):
            need += m.info.compress_size + 256
            if _changes(p) and m.header is not None:
                # a spilled member needs room for its inflated copy too
                need += m.header.nbytes if m.deflated else 0
        check_free_space(final.parent, need)
        total = sum(m.header.nbytes for m, p in zip(members, plans) if _changes(p) and m.header)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], total)

        with open_temp(final) as tmp:
            sink = DirectSink(tmp.fd, final, opts.chunk_bytes)
            try:
                zout = ZipOut(sink)
                for m, p in zip(members, plans):
                    if _changes(p):
                        where = f"{src}[{m.info.filename}]"
                        _write_converted(zout, fd, m, p, be, final, opts, advance, where)
                    else:
                        _copy_member(zout, fd, m)
                zout.close()
                written = sink.close()
            except BaseException:
                sink.abort()
                raise
            verify_npz(tmp.path, src, fd, members, plans, be, final, full=opts.verify)
            publish_output(
                tmp.path,
                final,
                overwrite=opts.force or opts.in_place,
                like=src if opts.in_place else None,
            )
    finally:
        os.close(fd)
    return _replace(
        base,
        status=CONVERTED,
        bytes_out=written,
        seconds=time.perf_counter() - t0,
        verified="full" if opts.verify else "sampled",
        removed_temps=tuple(str(p) for p in removed),
    )


def _copy_member(zout: ZipOut, fd: int, m: Member) -> None:
    info = m.info
    e = zout.begin(info, info.compress_type, known=(info.CRC, info.compress_size, info.file_size))
    pos, left = m.data_offset, info.compress_size
    while left:
        n = min(left, zout.sink.chunk)
        got = os.preadv(fd, [zout.sink.reserve(n)], pos)
        if got != n:
            raise _corrupt(str(m.info.filename), "short read")
        zout.sink.commit(n)
        pos += n
        left -= n
    zout.end(e, info.CRC, info.compress_size, info.file_size)


def _perms(h: NpyHeader, p: L.ArrayPlan) -> tuple[int, ...]:
    perm = p.perm or tuple(range(len(h.shape)))
    return raw_permutation(perm, h.fortran_order)


def _write_converted(
    zout: ZipOut,
    fd: int,
    m: Member,
    p: L.ArrayPlan,
    be: Backend,
    final: Path,
    opts: Options,
    advance: Any,
    where: str,
) -> None:
    h = m.header
    assert h is not None
    out_header = build_header(h.dtype, p.out_shape, h.fortran_order)
    usize = len(out_header) + h.nbytes
    rperm = _perms(h, p)
    sink = zout.sink
    with _open_source(fd, m, rperm, be, final, where) as source:
        if not m.deflated:
            e = zout.begin(m.info, zipfile.ZIP_STORED, usize_hint=usize)
            crc = crc32(out_header)
            sink.write(out_header)
            for block in source_blocks(source, rperm, opts.chunk_bytes):
                n = block.nbytes
                view = sink.reserve(n)
                copy_block(np.frombuffer(view, h.dtype).reshape(block.shape), block)
                crc = crc32(view, crc)
                view.release()
                sink.commit(n)
                advance(n)
            zout.end(e, crc, usize, usize)
            return
        e = zout.begin(m.info, zipfile.ZIP_DEFLATED, usize_hint=usize)
        state = {"crc": crc32(out_header)}

        def chunks() -> Iterator[bytes | memoryview]:
            yield out_header
            # smaller pieces for the deflate threads: several are in flight at once
            for block in source_blocks(source, rperm, min(opts.chunk_bytes, _DEFLATE_CHUNK)):
                owned = np.array(block, order="C", copy=True).reshape(-1).view(np.uint8)
                state["crc"] = crc32(owned, state["crc"])
                advance(owned.size)
                yield memoryview(owned)  # type: ignore[arg-type]  # numpy arrays are buffers

        csize = 0
        for piece in deflate_chunks(chunks(), be):
            sink.write(piece)
            csize += len(piece)
    zout.end(e, state["crc"], csize, usize)


def verify_npz(
    path: Path,
    src: Path,
    src_fd: int,
    members: list[Member],
    plans: tuple[L.ArrayPlan, ...],
    be: Backend,
    final: Path,
    *,
    full: bool,
) -> None:
    """Always: the zip directory, every member's name and .npy header, and sampled rows
    of stored members. ``full``: every byte of every member, against the source."""
    where = str(final)
    mismatch = KmxError(f"{where}: the output does not match the source; nothing was replaced")
    fd, size = _open_regular(path)
    try:
        out = read_members(path, fd, size, be)
        if [o.info.filename for o in out] != [m.info.filename for m in members]:
            raise mismatch
        for m, o, p in zip(members, out, plans):
            if not _changes(p):
                if (o.info.CRC, o.info.compress_size) != (m.info.CRC, m.info.compress_size):
                    raise mismatch
                if full:
                    _compare_raw(
                        src_fd, m.data_offset, fd, o.data_offset, m.info.compress_size, mismatch
                    )
                continue
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
                    with _open_source(src_fd, m, rperm, be, final, where, False) as source:
                        verify_data(source, got, rperm, full=full, where=where)
                finally:
                    got.close()
            elif full:
                stream = InflateStream(fd, o.data_offset, o.info, be, where)
                stream.read(oh.data_offset)
                with _open_source(src_fd, m, rperm, be, final, where, False) as source:
                    for block in source_blocks(source, rperm, 8 << 20):
                        expect = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
                        if not np.array_equal(stream.read(expect.size), expect):
                            raise mismatch
                stream.finish()
    finally:
        os.close(fd)


def _compare_raw(fa: int, oa: int, fb: int, ob: int, n: int, mismatch: KmxError) -> None:
    pos = 0
    while pos < n:
        k = min(n - pos, 8 << 20)
        if os.pread(fa, k, oa + pos) != os.pread(fb, k, ob + pos):
            raise mismatch
        pos += k


__all__ = ["FAILED", "InflateStream", "Member", "ZipOut", "convert_npz", "read_members"]
