"""The array data of an .npz member as a :class:`kmx_tune.convert.kernel.Source` for the
transpose: stored members are mapped straight from the file at their offset, their CRC
checked as the rows go by; deflated members are inflated a window of rows at a time,
or, when they cannot be read front to back, inflated first into a temporary file that
is already unlinked.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kmx_tune import fsio
from kmx_tune.convert.deflate import Backend, crc32
from kmx_tune.convert.kernel import MappedSource
from kmx_tune.convert.npyio import NpyHeader
from kmx_tune.convert.zipio import INFLATE_OUT, InflateStream, Member, corrupt, crc_range
from kmx_tune.errors import KmxError

_STREAM_ROW_LIMIT = 32 << 20  # larger rows (or Fortran order) are inflated to a temp file first


class InflateSource:
    """A Source over a deflated member: rows inflated on demand, in order."""

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
            self._crc = crc_range(fd, m.data_offset, self._data_end)
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
        crc = crc_range(
            self._fd, self._data_end, self._m.data_offset + self._m.info.file_size, self._crc
        )
        if crc != self._m.info.CRC:
            raise corrupt(self._where, "CRC check failed")


@contextlib.contextmanager
def open_member(
    src_fd: int,
    m: Member,
    rperm: tuple[int, ...],
    be: Backend,
    final: Path,
    where: str,
    check: bool = True,
) -> Iterator[Any]:
    """A Source for a member's array: mapped (stored; its CRC checked unless not
    ``check``), streamed (deflated), or inflated to an already-unlinked temporary file
    beside ``final`` (deflated, not streamable)."""
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
    with _spilled(stream, m, h, final) as spilled:
        yield spilled


@contextlib.contextmanager
def _spilled(stream: InflateStream, m: Member, h: NpyHeader, final: Path) -> Iterator[Any]:
    """The member inflated whole into a temporary file (unlinked at once, so nothing is
    left to clean up after a crash), mapped."""
    spill = fsio.temp_name(final)
    sfd = os.open(spill, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink(spill)
    try:
        left = m.info.file_size
        while left:
            chunk = stream.read(min(left, INFLATE_OUT))
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


__all__ = ["CrcCheckedSource", "InflateSource", "open_member"]
