"""The zip container of an .npz, read and written by hand; nothing here knows about
image layouts.

Reading: the central directory comes from :mod:`zipfile` (which never unpickles);
each member's local header is checked and its data located, and the .npy header of
every .npy member is parsed. Deflated data is inflated as a stream
(:class:`InflateStream`), its length and CRC checked at the end.
Writing: :class:`ZipOut` streams through a :class:`~kmx_tune.convert.writer.DirectSink`,
with data descriptors (flag bit 3) for the CRC and sizes known only at the end, and
zip64 records where sizes or offsets need them.

What a member carries besides its data is kept: its name as stored (bytes after a NUL
too, which :mod:`zipfile` cuts off in ``filename``), timestamp, attributes, comment and
extra fields (local and central: zip64 blocks are rewritten to fit the new sizes);
so are the archive comment and any bytes before the first member or after the end
record. Only bytes between members that no member accounts for are not carried over.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmx_tune.convert.deflate import Backend, crc32, inflater
from kmx_tune.convert.npyio import PREFIX_LEN, FormatError, NpyHeader, header_length, parse_header
from kmx_tune.convert.writer import DirectSink
from kmx_tune.errors import KmxError

_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IBBBBHHHHIIIHHHHHII")
_EOCD = struct.Struct("<IHHHHIIH")
_LOCAL_SIG, _CENTRAL_SIG, _DESC_SIG = 0x04034B50, 0x02014B50, 0x08074B50
_EOCD_SIG, _EOCD64_SIG, _LOC64_SIG = 0x06054B50, 0x06064B50, 0x07064B50
_FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x08, 0x800
_ZIP64_EXTRA = 0x0001
_U32 = 0xFFFFFFFF
_ZIP64_AT = 0xF0000000  # deflate can grow incompressible data a little: switch to zip64 early
_INFLATE_IN = 1 << 20
INFLATE_OUT = 4 << 20  # the most an inflate step returns

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


def corrupt(where: str, what: str) -> FormatError:
    return FormatError(f"{where}: {what}; the .npz file is corrupt or truncated")


def _deflated(info: zipfile.ZipInfo) -> bool:
    return info.compress_type == zipfile.ZIP_DEFLATED


# ---------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class Member:
    info: zipfile.ZipInfo
    data_offset: int  # where the member's (compressed) data starts in the zip file
    header: NpyHeader | None  # None: not an .npy member, copied as it is
    local_extra: bytes = b""  # the extra field of its local header, as stored

    @property
    def name(self) -> str:
        """The array's name: the member's name as stored (``orig_filename``: zipfile's
        ``filename`` stops at a NUL) without ``.npy``."""
        n = self.info.orig_filename
        return n[:-4] if n.endswith(".npy") else n

    @property
    def deflated(self) -> bool:
        return _deflated(self.info)

    @property
    def trailing(self) -> int:
        """Bytes of the member after its array's data (0 for a member that is not .npy)."""
        h = self.header
        if h is None or h.dtype.hasobject:
            return 0
        return max(0, self.info.file_size - h.data_offset - h.nbytes)


@dataclass(frozen=True)
class Archive:
    """An .npz's members, and what the zip holds around them."""

    members: list[Member]
    comment: bytes  # the archive comment
    prefix: int  # bytes before the first member (a self-extracting stub, say)
    trailing: int  # bytes after the end record


def read_members(path: Path, fd: int, size: int, be: Backend) -> list[Member]:
    """Every member of the zip file open as ``fd``, in order, with its .npy header."""
    return read_archive(path, fd, size, be).members


def read_archive(path: Path, fd: int, size: int, be: Backend) -> Archive:
    """The zip file open as ``fd``: its members, in order, each with its .npy header."""
    where = str(path)
    try:
        with os.fdopen(os.dup(fd), "rb") as fh, zipfile.ZipFile(fh) as zf:
            infos = zf.infolist()
            comment, start_dir = zf.comment, zf.start_dir
    except _ZIP_ERRORS as exc:
        if os.pread(fd, 6, 0) == b"\x93NUMPY":
            raise FormatError(
                f"{where}: this is a single .npy array, not an .npz (zip); rename it to .npy"
            ) from None
        raise FormatError(f"{where}: not a valid .npz (zip) file: {exc}") from None
    members: list[Member] = []
    for info in infos:
        mwhere = f"{where}[{info.orig_filename}]"
        data_offset, local_extra = _local_header(fd, size, info, mwhere)
        header = _npy_header(fd, data_offset, info, be, mwhere)
        members.append(Member(info, data_offset, header, local_extra))
    prefix = min((i.header_offset for i in infos), default=start_dir)
    return Archive(members, comment, max(0, prefix), _trailing(fd, size, comment))


def _trailing(fd: int, size: int, comment: bytes) -> int:
    """How many bytes follow the end-of-central-directory record and its comment."""
    start = max(0, size - (_EOCD.size + 0xFFFF + 4096))
    tail = os.pread(fd, size - start, start)
    sig = struct.pack("<I", _EOCD_SIG)
    at = tail.rfind(sig)
    while at >= 0:
        if at + _EOCD.size <= len(tail):
            n = _EOCD.unpack_from(tail, at)[-1]
            if tail[at + _EOCD.size : at + _EOCD.size + n] == comment:
                return len(tail) - (at + _EOCD.size + n)
        at = tail.rfind(sig, 0, at)
    return 0


def _local_header(fd: int, size: int, info: zipfile.ZipInfo, where: str) -> tuple[int, bytes]:
    """Where a member's data starts, and its local extra field, from its local header,
    once the member is known to be one we can read."""
    if info.flag_bits & 0x1:
        raise FormatError(f"{where}: encrypted zip members are not supported")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise FormatError(
            f"{where}: compression method {info.compress_type} is not supported "
            "(only stored and deflated, as numpy writes)"
        )
    if not 0 <= info.header_offset <= size - _LOCAL.size:
        raise corrupt(where, "the member's offset lies outside the file")
    local = os.pread(fd, _LOCAL.size, info.header_offset)
    if len(local) < _LOCAL.size or _LOCAL.unpack(local)[0] != _LOCAL_SIG:
        raise corrupt(where, "bad local zip header")
    fields = _LOCAL.unpack(local)
    extra_at = info.header_offset + _LOCAL.size + fields[9]
    data_offset = extra_at + fields[10]
    if data_offset + info.compress_size > size:
        raise corrupt(where, "member data runs past the end of the file")
    return data_offset, os.pread(fd, fields[10], extra_at)


def _npy_header(
    fd: int, data_offset: int, info: zipfile.ZipInfo, be: Backend, where: str
) -> NpyHeader | None:
    """The .npy header of a member named .npy or starting with the .npy magic; None
    for any other member."""
    if not info.filename.endswith(".npy") and not member_prefix(
        fd, data_offset, info, 6, be, where
    ).startswith(b"\x93NUMPY"):
        return None
    prefix = member_prefix(fd, data_offset, info, PREFIX_LEN, be, where)
    _, hlen = header_length(prefix, where)
    header = parse_header(member_prefix(fd, data_offset, info, hlen, be, where), where)
    need = header.data_offset + header.nbytes
    too_big = need > info.file_size or (not _deflated(info) and need > info.compress_size)
    if too_big and not header.dtype.hasobject:
        raise FormatError(
            f"{where}: the header claims {need} bytes but the member holds "
            f"{info.file_size}; the file is truncated or corrupt"
        )
    return header


def member_prefix(
    fd: int, offset: int, info: zipfile.ZipInfo, n: int, be: Backend, where: str
) -> bytes:
    """The first ``n`` bytes of a member's uncompressed data (fewer if it is shorter)."""
    if not _deflated(info):
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
        raise corrupt(where, f"cannot inflate the member ({exc})") from None
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
                raise corrupt(self._where, "the member's data ends early")
            data = os.pread(self._fd, min(_INFLATE_IN, self._end - self._pos), self._pos)
            if not data:
                raise corrupt(self._where, "the member's data ends early")
            self._pos += len(data)
        try:
            out = self._d.decompress(data, INFLATE_OUT)
        except self._errors as exc:
            raise corrupt(self._where, f"cannot inflate the member ({exc})") from None
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
            raise corrupt(self._where, "CRC or length check failed")


def crc_range(fd: int, start: int, end: int, crc: int = 0) -> int:
    """``crc`` continued over the bytes ``start:end`` of the file."""
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


def raw_name(info: zipfile.ZipInfo) -> tuple[bytes, int]:
    """A member's name as stored, and its UTF-8 flag: ``orig_filename`` encoded back the
    way :mod:`zipfile` decoded it (so a NUL and what follows it stay)."""
    name = info.orig_filename
    if info.flag_bits & _FLAG_UTF8:
        return name.encode("utf-8", "surrogateescape"), _FLAG_UTF8
    try:
        return name.encode("cp437"), 0
    except UnicodeEncodeError:  # a ZipInfo made by hand
        return name.encode("utf-8"), _FLAG_UTF8


def without_zip64(extra: bytes) -> bytes:
    """An extra field without its zip64 blocks (rewritten for the new sizes); other
    blocks, and a tail too short to be a block, stay as they are."""
    kept, pos = [], 0
    while pos + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + n > len(extra):
            break
        if tag != _ZIP64_EXTRA:
            kept.append(extra[pos : pos + 4 + n])
        pos += 4 + n
    kept.append(extra[pos:])
    return b"".join(kept)


def _fits(extra: bytes) -> bytes:
    if len(extra) > 0xFFFF:
        raise KmxError("a zip member's extra field grew past 64 KB; nothing was written")
    return extra


@dataclass
class ZipEntry:
    """A member being written: what its central directory record will say."""

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
    extra: bytes = b""  # the central extra field, without zip64 blocks
    comment: bytes = b""
    internal_attr: int = 0
    system: int = 3  # made by: Unix, unless the source member says otherwise


class ZipOut:
    """A zip writer that streams through a :class:`DirectSink` (never seeks)."""

    def __init__(self, sink: DirectSink) -> None:
        self.sink = sink
        self.entries: list[ZipEntry] = []

    def begin(
        self,
        info: zipfile.ZipInfo,
        method: int,
        *,
        known: tuple[int, int, int] | None = None,
        usize_hint: int = 0,
        local_extra: bytes = b"",
    ) -> ZipEntry:
        """Write a local header. ``known``: (crc, csize, usize) of a member copied as it
        is (its flags kept); otherwise they follow the data in a descriptor. The name,
        timestamp, attributes, comment and extra fields come from ``info`` (the local
        extra field from ``local_extra``)."""
        name, utf8 = raw_name(info)
        flags = (info.flag_bits & ~(_FLAG_DESCRIPTOR | _FLAG_UTF8) if known else 0) | utf8
        big = max(usize_hint, known[1] if known else 0, known[2] if known else 0) >= _ZIP64_AT
        e = ZipEntry(
            name,
            flags,
            method,
            info.date_time,
            info.external_attr,
            self.sink.written,
            extra=without_zip64(info.extra),
            comment=info.comment,
            internal_attr=info.internal_attr,
            system=info.create_system,
        )
        e.zip64 = big
        if known is None:
            e.flags |= _FLAG_DESCRIPTOR
            crc, csize, usize = 0, 0, 0
        else:
            crc, csize, usize = known
        extra = b""
        if big:
            extra = struct.pack("<HHQQ", _ZIP64_EXTRA, 16, usize, csize)
            csize = usize = _U32
        extra = _fits(extra + without_zip64(local_extra))
        t, d = _dos_time(e.dt)
        version = 45 if big else 20
        self.sink.write(
            _LOCAL.pack(
                _LOCAL_SIG, version, e.flags, method, t, d, crc, csize, usize, len(name), len(extra)
            )
            + name
            + extra
        )
        if known:
            e.crc, e.csize, e.usize = known
        self.entries.append(e)
        return e

    def end(self, e: ZipEntry, crc: int, csize: int, usize: int) -> None:
        e.crc, e.csize, e.usize = crc, csize, usize
        if e.flags & _FLAG_DESCRIPTOR:
            if e.zip64:
                self.sink.write(struct.pack("<IIQQ", _DESC_SIG, crc, csize, usize))
            else:
                if max(csize, usize) >= _U32:
                    raise KmxError("a zip member grew past 4 GB unexpectedly; nothing was written")
                self.sink.write(struct.pack("<IIII", _DESC_SIG, crc, csize, usize))

    def close(self, comment: bytes = b"") -> None:
        """Write the central directory and its end records, with the archive
        ``comment``."""
        start = self.sink.written
        for e in self.entries:
            self.sink.write(_central_record(e))
        size = self.sink.written - start
        count = len(self.entries)
        if count >= 0xFFFF or size >= _U32 or start >= _U32:
            eocd64 = self.sink.written
            self.sink.write(
                struct.pack("<IQHHIIQQQQ", _EOCD64_SIG, 44, 45, 45, 0, 0, count, count, size, start)
                + struct.pack("<IIQI", _LOC64_SIG, 0, eocd64, 1)
            )
            self.sink.write(
                _EOCD.pack(_EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, _U32, _U32, len(comment)) + comment
            )
        else:
            self.sink.write(
                _EOCD.pack(_EOCD_SIG, 0, 0, count, count, size, start, len(comment)) + comment
            )


def _central_record(e: ZipEntry) -> bytes:
    """The central directory record of ``e``, with a zip64 extra field for any size or
    offset that does not fit in 32 bits."""
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
    extra = struct.pack(f"<HH{len(z)}Q", _ZIP64_EXTRA, 8 * len(z), *z) if z else b""
    extra = _fits(extra + e.extra)
    version = 45 if z or e.zip64 else 20
    t, d = _dos_time(e.dt)
    # signature, made by (spec version, system), needed to extract, flags, method, time,
    # date, CRC, sizes; then name, extra and comment lengths, disk number, internal and
    # external attributes, local header offset
    head = (_CENTRAL_SIG, version, e.system, version, 0, e.flags, e.method, t, d, e.crc, csize)
    record = _CENTRAL.pack(
        *head,
        usize,
        len(e.name),
        len(extra),
        len(e.comment),
        0,
        e.internal_attr,
        e.external_attr,
        offset,
    )
    return record + e.name + extra + e.comment


__all__ = [
    "INFLATE_OUT",
    "Archive",
    "InflateStream",
    "Member",
    "ZipEntry",
    "ZipOut",
    "corrupt",
    "crc_range",
    "member_prefix",
    "raw_name",
    "read_archive",
    "read_members",
    "without_zip64",
]
