"""The zip container of an .npz, written by hand (:mod:`.zipio` reads it).

:class:`ZipOut` streams through a :class:`~kmx_tune.convert.writer.DirectSink` (it never
seeks), with data descriptors (flag bit 3) for the CRC and sizes known only at the end,
and zip64 records where sizes or offsets need them. What a member carries besides its
data is written back as the source had it: its name as stored, timestamp, attributes,
comment and extra fields (local and central; zip64 blocks are rewritten to fit the new
sizes), and the archive comment.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass

from kmx_tune.convert.writer import DirectSink
from kmx_tune.convert.zipio import (
    CENTRAL,
    CENTRAL_SIG,
    DESC_SIG,
    EOCD,
    EOCD64_SIG,
    EOCD_SIG,
    FLAG_DESCRIPTOR,
    FLAG_UTF8,
    LOC64_SIG,
    LOCAL,
    LOCAL_SIG,
    U32,
    ZIP64_AT,
    ZIP64_EXTRA,
    raw_name,
)
from kmx_tune.errors import KmxError


def _dos_time(dt: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    y, mo, d, h, mi, s = dt
    y = min(max(y, 1980), 2107)
    return (h << 11) | (mi << 5) | (s // 2), ((y - 1980) << 9) | (mo << 5) | d


def without_zip64(extra: bytes) -> bytes:
    """An extra field without its zip64 blocks (rewritten for the new sizes); other
    blocks, and a tail too short to be a block, stay as they are."""
    kept, pos = [], 0
    while pos + 4 <= len(extra):
        tag, n = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + n > len(extra):
            break
        if tag != ZIP64_EXTRA:
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
        flags = (info.flag_bits & ~(FLAG_DESCRIPTOR | FLAG_UTF8) if known else 0) | utf8
        big = max(usize_hint, known[1] if known else 0, known[2] if known else 0) >= ZIP64_AT
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
            e.flags |= FLAG_DESCRIPTOR
            crc, csize, usize = 0, 0, 0
        else:
            crc, csize, usize = known
        extra = b""
        if big:
            extra = struct.pack("<HHQQ", ZIP64_EXTRA, 16, usize, csize)
            csize = usize = U32
        extra = _fits(extra + without_zip64(local_extra))
        t, d = _dos_time(e.dt)
        version = 45 if big else 20
        self.sink.write(
            LOCAL.pack(
                LOCAL_SIG, version, e.flags, method, t, d, crc, csize, usize, len(name), len(extra)
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
        if e.flags & FLAG_DESCRIPTOR:
            if e.zip64:
                self.sink.write(struct.pack("<IIQQ", DESC_SIG, crc, csize, usize))
            else:
                if max(csize, usize) >= U32:
                    raise KmxError("a zip member grew past 4 GB unexpectedly; nothing was written")
                self.sink.write(struct.pack("<IIII", DESC_SIG, crc, csize, usize))

    def close(self, comment: bytes = b"") -> None:
        """Write the central directory and its end records, with the archive
        ``comment``."""
        start = self.sink.written
        for e in self.entries:
            self.sink.write(_central_record(e))
        size = self.sink.written - start
        count = len(self.entries)
        if count >= 0xFFFF or size >= U32 or start >= U32:
            eocd64 = self.sink.written
            self.sink.write(
                struct.pack("<IQHHIIQQQQ", EOCD64_SIG, 44, 45, 45, 0, 0, count, count, size, start)
                + struct.pack("<IIQI", LOC64_SIG, 0, eocd64, 1)
            )
            self.sink.write(
                EOCD.pack(EOCD_SIG, 0, 0, 0xFFFF, 0xFFFF, U32, U32, len(comment)) + comment
            )
        else:
            self.sink.write(
                EOCD.pack(EOCD_SIG, 0, 0, count, count, size, start, len(comment)) + comment
            )


def _central_record(e: ZipEntry) -> bytes:
    """The central directory record of ``e``, with a zip64 extra field for any size or
    offset that does not fit in 32 bits."""
    z: list[int] = []
    usize, csize, offset = e.usize, e.csize, e.offset
    if usize >= U32:
        z.append(usize)
        usize = U32
    if csize >= U32:
        z.append(csize)
        csize = U32
    if offset >= U32:
        z.append(offset)
        offset = U32
    extra = struct.pack(f"<HH{len(z)}Q", ZIP64_EXTRA, 8 * len(z), *z) if z else b""
    extra = _fits(extra + e.extra)
    version = 45 if z or e.zip64 else 20
    t, d = _dos_time(e.dt)
    # signature, made by (spec version, system), needed to extract, flags, method, time,
    # date, CRC, sizes; then name, extra and comment lengths, disk number, internal and
    # external attributes, local header offset
    head = (CENTRAL_SIG, version, e.system, version, 0, e.flags, e.method, t, d, e.crc, csize)
    record = CENTRAL.pack(
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


__all__ = ["ZipEntry", "ZipOut", "without_zip64"]
