"""The array data of an .npz member as a :class:`kmx_tune.convert.kernel.Source` for the
transpose: stored members are read straight from the file at their offset (``pread``,
never mapped: see :mod:`.kernel`), their CRC checked as the rows go by; deflated members
are inflated a window of rows at a time, or, when they cannot be read front to back,
inflated first into a temporary file that is already unlinked.
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
from kmx_tune.convert.kernel import MappedSource, ReadSource, moving_dtype, reads_rows
from kmx_tune.convert.npyio import NpyHeader
from kmx_tune.convert.zipio import INFLATE_OUT, InflateStream, Member, corrupt, crc_range
from kmx_tune.errors import KmxError


class InflateSource:
    """A Source over a deflated member: rows inflated on demand, in order."""

    def __init__(self, stream: InflateStream, header: NpyHeader):
        self.raw_shape = header.raw_shape
        self.dtype = moving_dtype(header.dtype)
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

    def region(self, index: tuple[slice, ...]) -> np.ndarray:
        raise AssertionError("InflateSource reads whole rows in order only")

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
    """A stored member's data whose CRC is checked as the rows go by, when the transpose
    reads it as whole rows in order; :meth:`finish` compares it with the zip directory.
    Otherwise one sequential pass checks it before conversion."""

    def __init__(self, data: ReadSource, fd: int, m: Member, sequential: bool, where: str):
        assert m.header is not None
        self.raw_shape, self.dtype = data.raw_shape, data.dtype
        self.window_bytes = data.window_bytes
        self._data, self._fd, self._m, self._where = data, fd, m, where
        self._data_end = m.data_offset + m.header.data_offset + m.header.nbytes
        self._sequential = sequential and bool(self.raw_shape)
        if self._sequential:
            self._crc = crc32(os.pread(fd, m.header.data_offset, m.data_offset))
            self._next = 0
        else:
            self._crc = crc_range(fd, m.data_offset, self._data_end)
            self._next = self.raw_shape[0] if self.raw_shape else 0

    def rows(self, start: int, stop: int) -> np.ndarray:
        if self._sequential and stop > self._next:
            # one read for the rows asked and any not yet checked before them
            low = min(start, self._next)
            window = self._data.rows(low, stop)
            fresh = window[self._next - low :]
            self._crc = crc32(np.ascontiguousarray(fresh).reshape(-1).view(np.uint8), self._crc)
            self._next = stop
            return window[start - low :]
        return self._data.rows(start, stop)

    def region(self, index: tuple[slice, ...]) -> np.ndarray:
        return self._data.region(index)

    def release(self) -> None:
        self._data.release()

    def finish(self) -> None:
        total = self.raw_shape[0] if self.raw_shape else 0
        if self._next < total:
            self.rows(self._next, total)
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
    """A Source for a member's array: read from the file (stored; its CRC checked unless
    not ``check``), streamed (deflated), or inflated to an already-unlinked temporary file
    beside ``final`` (deflated, not readable as whole rows in order)."""
    h = m.header
    assert h is not None
    in_rows = reads_rows(h.raw_shape, h.dtype.itemsize, rperm)
    if not m.deflated:
        data = ReadSource(src_fd, m.data_offset + h.data_offset, h.raw_shape, h.dtype, where)
        try:
            if check:
                checked = CrcCheckedSource(data, src_fd, m, in_rows, where)
                yield checked
                checked.finish()
            else:
                yield data
        finally:
            data.close()
        return
    stream = InflateStream(src_fd, m.data_offset, m.info, be, where)
    if in_rows:
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
    with contextlib.suppress(FileNotFoundError):  # another run took it for a leftover
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
