"""The zip container of an .npz, read by hand (:mod:`.zipout` writes it); nothing here
knows about image layouts.

The central directory comes from :mod:`zipfile` (which never unpickles); each member's
local header is checked and its data and local extra field located, and the .npy header
of every .npy member is parsed. Deflated data is inflated as a stream
(:class:`InflateStream`), its length and CRC checked at the end. What lies around the
members is measured too: the archive comment, bytes before the first member and after
the end record, so that the output can carry them over. A member's name is kept as
stored (:func:`raw_name`: bytes after a NUL too, which :mod:`zipfile` cuts off in
``filename``).
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

LOCAL = struct.Struct("<IHHHHHIIIHH")
CENTRAL = struct.Struct("<IBBBBHHHHIIIHHHHHII")
EOCD = struct.Struct("<IHHHHIIH")
LOCAL_SIG, CENTRAL_SIG, DESC_SIG = 0x04034B50, 0x02014B50, 0x08074B50
EOCD_SIG, EOCD64_SIG, LOC64_SIG = 0x06054B50, 0x06064B50, 0x07064B50
FLAG_DESCRIPTOR, FLAG_UTF8 = 0x08, 0x800
ZIP64_EXTRA = 0x0001
U32 = 0xFFFFFFFF
ZIP64_AT = 0xF0000000  # deflate can grow incompressible data a little: switch to zip64 early
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
    start = max(0, size - (EOCD.size + 0xFFFF + 4096))
    tail = os.pread(fd, size - start, start)
    sig = struct.pack("<I", EOCD_SIG)
    at = tail.rfind(sig)
    while at >= 0:
        if at + EOCD.size <= len(tail):
            n = EOCD.unpack_from(tail, at)[-1]
            if tail[at + EOCD.size : at + EOCD.size + n] == comment:
                return len(tail) - (at + EOCD.size + n)
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
    if not 0 <= info.header_offset <= size - LOCAL.size:
        raise corrupt(where, "the member's offset lies outside the file")
    local = os.pread(fd, LOCAL.size, info.header_offset)
    if len(local) < LOCAL.size or LOCAL.unpack(local)[0] != LOCAL_SIG:
        raise corrupt(where, "bad local zip header")
    fields = LOCAL.unpack(local)
    extra_at = info.header_offset + LOCAL.size + fields[9]
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


def raw_name(info: zipfile.ZipInfo) -> tuple[bytes, int]:
    """A member's name as stored, and its UTF-8 flag: ``orig_filename`` encoded back the
    way :mod:`zipfile` decoded it (so a NUL and what follows it stay)."""
    name = info.orig_filename
    if info.flag_bits & FLAG_UTF8:
        return name.encode("utf-8", "surrogateescape"), FLAG_UTF8
    try:
        return name.encode("cp437"), 0
    except UnicodeEncodeError:  # a ZipInfo made by hand
        return name.encode("utf-8"), FLAG_UTF8


__all__ = [
    "INFLATE_OUT",
    "Archive",
    "InflateStream",
    "Member",
    "corrupt",
    "crc_range",
    "member_prefix",
    "raw_name",
    "read_archive",
    "read_members",
]
