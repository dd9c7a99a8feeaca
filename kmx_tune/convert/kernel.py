"""The chunked transpose: output-ordered blocks of a few MB, each one a plain numpy
assignment from a transposed view of the source (measured: no numpy trick beat it).

Arrays are handled as their raw C-ordered data: a Fortran-ordered array of shape S is
the C-ordered array of shape reversed(S), and it stays Fortran-ordered in the output,
so both sides are read and written front to back. Records of a structured dtype move
as opaque bytes (:func:`moving_dtype`), padding and all.

The user's file is read with ``pread`` (:class:`ReadSource`), never mapped: a file that
another program cuts short during the conversion then gives a short read and a clear
error, where a mapping would kill the process with SIGBUS. Only kmx-tune's own files
(the output being checked, an unlinked spill file) are mapped (:class:`MappedSource`).
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from kmx_tune.convert.npyio import FormatError

CHUNK_BYTES = 8 << 20  # 8 to 32 MB did best in the measurements; smaller keeps RSS low
ROW_LIMIT = 32 << 20  # a source row (one sample) larger than this is never read whole
READ_BYTES = 1 << 20  # blocks read with pread: small enough to stay in cache (measured)
_SPAN_SLACK = 4  # a region is read in one piece when that reads at most 4x what it needs,
_SPAN_MIN = 1 << 20  # or at most 1 MB; otherwise one read per contiguous run


def moving_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype the transpose moves: a structured dtype's records as opaque bytes, so
    every byte of a record moves with it (numpy's own copies skip padding bytes)."""
    return np.dtype((np.void, dtype.itemsize)) if dtype.fields is not None else dtype


def reads_rows(raw_shape: tuple[int, ...], itemsize: int, rperm: tuple[int, ...]) -> bool:
    """Whether the transpose reads the source as windows of whole rows, in order (output
    row i comes from source row i, and a row is at most :data:`ROW_LIMIT`); otherwise
    each block reads just the region of the source it needs."""
    return bool(raw_shape) and rperm[0] == 0 and math.prod(raw_shape[1:]) * itemsize <= ROW_LIMIT


class Source(Protocol):
    """Raw C-ordered source data, readable a window of rows (axis 0) at a time."""

    raw_shape: tuple[int, ...]
    dtype: np.dtype

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``. Streaming sources allow only forward windows."""
        ...

    def region(self, index: tuple[slice, ...]) -> np.ndarray:
        """``raw[index]``: one slice (step 1) per axis. Sources that :func:`reads_rows`
        never asks this of need not support it."""
        ...

    def release(self) -> None:
        """The caller is done with the last window (drop its pages from our memory)."""
        ...


def raw_permutation(perm: tuple[int, ...], fortran_order: bool) -> tuple[int, ...]:
    """The transpose of the raw C-ordered data that gives the logical transpose ``perm``.

    For Fortran order, raw = logical.T on both sides, so raw_out = raw_in.T.transpose(perm).T.
    """
    if not fortran_order:
        return perm
    n = len(perm)
    return tuple(n - 1 - perm[n - 1 - j] for j in range(n))


def blocks(
    out_shape: tuple[int, ...],
    itemsize: int,
    chunk_bytes: int,
    only_rows: Sequence[int] | None = None,
) -> Iterator[tuple[int, ...]]:
    """Output blocks in file order, each at most ``chunk_bytes`` (or one element row).

    A block is ``(i0, ..., i_{k-2}, start, stop)``: fixed indices on the leading
    axes and a range on axis ``k-1``, where ``k`` is the fewest leading axes whose
    sub-arrays fit in a chunk (k == 1 for ordinary image batches: a run of samples).
    ``only_rows``: just the blocks of those rows (axis 0) of the output.
    """
    if not out_shape or math.prod(out_shape) == 0:
        return
    k = 1
    while k < len(out_shape) and math.prod(out_shape[k:]) * itemsize > chunk_bytes:
        k += 1
    per = max(1, chunk_bytes // (math.prod(out_shape[k:]) * itemsize))
    if only_rows is not None:
        for row in sorted(set(only_rows)):
            if k == 1:
                yield (row, row + 1)
                continue
            n = out_shape[k - 1]
            for idx in np.ndindex(*out_shape[1 : k - 1]):
                for start in range(0, n, per):
                    yield (row, *(int(i) for i in idx), start, min(n, start + per))
        return
    for idx in np.ndindex(*out_shape[: k - 1]):
        n = out_shape[k - 1]
        for start in range(0, n, per):
            yield (*(int(i) for i in idx), start, min(n, start + per))


def source_blocks(src: Source, rperm: tuple[int, ...], chunk_bytes: int) -> Iterator[np.ndarray]:
    """The output, block by block, as (non-contiguous) views of the source.

    Copy each block out before asking for the next: the view may be released."""
    for _, view in blocks_at(src, rperm, chunk_bytes):
        yield view


def blocks_at(
    src: Source, rperm: tuple[int, ...], chunk_bytes: int, only_rows: Sequence[int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """:func:`source_blocks` with where each block starts in the output, in bytes;
    ``only_rows``: just those rows of the output (axis 0)."""
    if not src.raw_shape:  # a 0-d array: one element
        yield 0, src.rows(0, 1).reshape(())
        return
    out_shape = tuple(src.raw_shape[a] for a in rperm)
    item = src.dtype.itemsize
    chunk_bytes = min(chunk_bytes, getattr(src, "window_bytes", 0) or chunk_bytes)
    strides = [math.prod(out_shape[i + 1 :]) * item for i in range(len(out_shape))]
    by_rows = reads_rows(src.raw_shape, item, rperm)
    for block in blocks(out_shape, item, chunk_bytes, only_rows):
        lead, start, stop = block[:-2], block[-2], block[-1]
        index: tuple[Any, ...]
        if by_rows:
            # output row i comes from source row i: read only the rows this block needs
            first = lead[0] if lead else start
            last = lead[0] + 1 if lead else stop
            view = src.rows(first, last).transpose(rperm)
            index = (0, *lead[1:], slice(start, stop)) if lead else (slice(None),)
        else:
            # the region of the source this block comes from, read as it is laid out
            region = [slice(None)] * len(rperm)
            for axis, i in zip(rperm, lead):
                region[axis] = slice(i, i + 1)
            region[rperm[len(lead)]] = slice(start, stop)
            view = src.region(tuple(region)).transpose(rperm)
            index = (*(0 for _ in lead), slice(None))
        yield sum(i * s for i, s in zip((*lead, start), strides)), view[index]
        src.release()


_POOL: ThreadPoolExecutor | None = None
_WORKERS = 0  # threads for a copy, once known
_PARALLEL_MIN = 256 << 10  # smaller copies are not worth splitting (a 1 MB read window is)


def copy_block(dst: np.ndarray, block: np.ndarray) -> None:
    """``dst[...] = block`` on all cores: the strided copy of a transpose is the CPU
    cost of a conversion (numpy releases the GIL while it copies)."""
    global _POOL, _WORKERS
    if _WORKERS == 0:
        _WORKERS = min(4, os.cpu_count() or 1)
    workers = _WORKERS
    axis = 0 if block.ndim and block.shape[0] > 1 else (1 if block.ndim > 1 else -1)
    if workers < 2 or axis < 0 or block.nbytes < _PARALLEL_MIN or block.dtype.hasobject:
        np.copyto(dst, block)
        return
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmx-copy")
    n = block.shape[axis]
    bounds = [n * i // workers for i in range(workers + 1)]
    lead: tuple[slice, ...] = (slice(None),) * axis
    parts = [lead + (slice(a, b),) for a, b in zip(bounds, bounds[1:]) if b > a]
    futures = [_POOL.submit(np.copyto, dst[part], block[part]) for part in parts]
    for f in futures:
        f.result()


class MappedSource:
    """Array data at a byte offset of a file, read through a read-only mapping whose
    pages are dropped from this process after each block (so RSS stays flat). Only for
    kmx-tune's own files: a mapped file that shrinks kills the process (SIGBUS)."""

    def __init__(
        self,
        path: os.PathLike[str] | str | int,
        offset: int,
        raw_shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        self.raw_shape = raw_shape
        self.dtype = dtype = moving_dtype(dtype)
        count = math.prod(raw_shape)
        self._mm: mmap.mmap | None = None
        if count == 0:
            self.array = np.empty(raw_shape, dtype)
            return
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY)
        try:
            self._mm = mmap.mmap(
                fd, offset - start + count * dtype.itemsize, access=mmap.ACCESS_READ, offset=start
            )
        finally:
            if not isinstance(path, int):
                os.close(fd)
        if hasattr(mmap, "MADV_SEQUENTIAL"):
            self._mm.madvise(mmap.MADV_SEQUENTIAL)
        self.array = np.frombuffer(self._mm, dtype, count=count, offset=offset - start).reshape(
            raw_shape
        )

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self.raw_shape:
            return self.array.reshape(1)
        return self.array[start:stop]

    def region(self, index: tuple[slice, ...]) -> np.ndarray:
        return self.array[index]

    def release(self) -> None:
        if self._mm is not None and hasattr(mmap, "MADV_DONTNEED"):
            # the pages stay in the page cache; only this process's mapping of them goes
            self._mm.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        del self.array
        if self._mm is not None:
            # a caller may still hold a view; the mapping then goes with it
            with contextlib.suppress(BufferError):
                self._mm.close()


class ReadSource:
    """Array data at a byte offset of the file open as ``fd``, read with ``pread`` into a
    buffer this object owns: a window of whole rows (:meth:`rows`, the last window kept
    for the next call), or the region a block needs (:meth:`region`). A read that comes
    back short means the file was cut short since its header was read: one clear error.

    Blocks taken from it are at most :data:`READ_BYTES` (see :func:`blocks_at`), so each
    window is still in the CPU's cache when it is transposed. A returned array is valid
    until the next call."""

    window_bytes = 0  # set per instance: the most a block should read

    def __init__(
        self, fd: int, offset: int, raw_shape: tuple[int, ...], dtype: np.dtype, where: str
    ) -> None:
        self.raw_shape = raw_shape
        self.dtype = moving_dtype(dtype)
        self._fd, self._offset, self._where = fd, offset, where
        self._strides = [
            math.prod(raw_shape[i + 1 :]) * self.dtype.itemsize for i in range(len(raw_shape))
        ]
        self._buf = np.empty(0, np.uint8)
        self._window: tuple[int, int, np.ndarray] | None = None
        self.window_bytes = READ_BYTES

    def rows(self, start: int, stop: int) -> np.ndarray:
        if not self.raw_shape:
            return self._read(self._offset, self.dtype.itemsize).view(self.dtype)
        if self._window is not None and self._window[:2] == (start, stop):
            return self._window[2]
        row = self._strides[0]
        data = self._read(self._offset + start * row, (stop - start) * row)
        arr = data.view(self.dtype).reshape((stop - start, *self.raw_shape[1:]))
        self._window = (start, stop, arr)
        return arr

    def region(self, index: tuple[slice, ...]) -> np.ndarray:
        self._window = None  # the buffer is about to be reused
        starts = [s.start or 0 for s in index]
        lens = [
            (n if s.stop is None else s.stop) - a for s, a, n in zip(index, starts, self.raw_shape)
        ]
        item = self.dtype.itemsize
        need = math.prod(lens) * item
        if need == 0:
            return np.empty(lens, self.dtype)
        first = self._offset + sum(a * s for a, s in zip(starts, self._strides))
        span = sum((n - 1) * s for n, s in zip(lens, self._strides)) + item
        if span == need or span <= max(_SPAN_SLACK * need, _SPAN_MIN):
            # one read from the region's first byte to its last, viewed with the file's strides
            data = self._read(first, span)
            return np.ndarray(lens, self.dtype, buffer=data, strides=self._strides)
        # many reads: a run is the last partial axis with every axis after it
        j = max(i for i, (n, m) in enumerate(zip(lens, self.raw_shape)) if n != m)
        run = lens[j] * self._strides[j]
        out = self._buffer(need)
        pos = 0
        for idx in np.ndindex(*lens[:j]):
            self._read_into(
                out[pos : pos + run], first + sum(int(i) * s for i, s in zip(idx, self._strides))
            )
            pos += run
        return out[:need].view(self.dtype).reshape(lens)

    def release(self) -> None:
        pass

    def close(self) -> None:
        self._window = None
        self._buf = np.empty(0, np.uint8)

    def _buffer(self, n: int) -> np.ndarray:
        if self._buf.size < n:
            self._buf = np.empty(n, np.uint8)
        return self._buf

    def _read(self, pos: int, n: int) -> np.ndarray:
        buf = self._buffer(n)[:n]
        self._read_into(buf, pos)
        return buf

    def _read_into(self, buf: np.ndarray, pos: int) -> None:
        view = memoryview(buf)  # type: ignore[arg-type]  # numpy arrays are buffers
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], pos + done)
            if got <= 0:
                raise FormatError(
                    f"{self._where}: the file changed while it was being read (it is shorter "
                    "now: another program cut it short?); nothing was written"
                )
            done += got
