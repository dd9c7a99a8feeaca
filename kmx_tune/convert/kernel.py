"""The chunked transpose: output-ordered blocks of a few MB, each one a plain numpy
assignment from a transposed view of the source (measured: no numpy trick beat it).

Arrays are handled as their raw C-ordered data: a Fortran-ordered array of shape S is
the C-ordered array of shape reversed(S), and it stays Fortran-ordered in the output,
so both sides are read and written front to back.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

CHUNK_BYTES = 8 << 20  # 8 to 32 MB did best in the measurements; smaller keeps RSS low


class Source(Protocol):
    """Raw C-ordered source data, readable a window of rows (axis 0) at a time."""

    raw_shape: tuple[int, ...]
    dtype: np.dtype

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``. Streaming sources allow only forward windows."""
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
    out_shape: tuple[int, ...], itemsize: int, chunk_bytes: int
) -> Iterator[tuple[int, ...]]:
    """Output blocks in file order, each at most ``chunk_bytes`` (or one element row).

    A block is ``(i0, ..., i_{k-2}, start, stop)``: fixed indices on the leading
    axes and a range on axis ``k-1``, where ``k`` is the fewest leading axes whose
    sub-arrays fit in a chunk (k == 1 for ordinary image batches: a run of samples).
    """
    if not out_shape or math.prod(out_shape) == 0:
        return
    k = 1
    while k < len(out_shape) and math.prod(out_shape[k:]) * itemsize > chunk_bytes:
        k += 1
    per = max(1, chunk_bytes // (math.prod(out_shape[k:]) * itemsize))
    for idx in np.ndindex(*out_shape[: k - 1]):
        n = out_shape[k - 1]
        for start in range(0, n, per):
            yield (*(int(i) for i in idx), start, min(n, start + per))


def source_blocks(src: Source, rperm: tuple[int, ...], chunk_bytes: int) -> Iterator[np.ndarray]:
    """The output, block by block, as (non-contiguous) views of the source.

    Copy each block out before asking for the next: the view may be released."""
    if not src.raw_shape:  # a 0-d array: one element
        yield src.rows(0, 1).reshape(())
        return
    out_shape = tuple(src.raw_shape[a] for a in rperm)
    whole: np.ndarray | None = None
    for block in blocks(out_shape, src.dtype.itemsize, chunk_bytes):
        lead, start, stop = block[:-2], block[-2], block[-1]
        if rperm[0] == 0:
            # output row i comes from source row i: read only the rows this block needs
            first = lead[0] if lead else start
            last = lead[0] + 1 if lead else stop
            view = src.rows(first, last).transpose(rperm)
            index: tuple[Any, ...] = (0, *lead[1:], slice(start, stop)) if lead else (slice(None),)
        else:
            if whole is None:
                whole = src.rows(0, src.raw_shape[0])
            view = whole.transpose(rperm)
            index = (*lead, slice(start, stop))
        yield view[index]
        src.release()


_POOL: ThreadPoolExecutor | None = None


def copy_block(dst: np.ndarray, block: np.ndarray) -> None:
    """``dst[...] = block`` on all cores: the strided copy of a transpose is the CPU
    cost of a conversion (numpy releases the GIL while it copies)."""
    global _POOL
    workers = min(4, os.cpu_count() or 1)
    axis = 0 if block.ndim and block.shape[0] > 1 else (1 if block.ndim > 1 else -1)
    if workers < 2 or axis < 0 or block.nbytes < (1 << 20) or block.dtype.hasobject:
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
    pages are dropped from this process after each block (so RSS stays flat)."""

    def __init__(
        self,
        path: os.PathLike[str] | str | int,
        offset: int,
        raw_shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        self.raw_shape = raw_shape
        self.dtype = dtype
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
