"""Raw deflate for .npz members: the fastest zlib-compatible library at hand, and
both cores.

Measured on this project's 2-core VM (uint8 image batches, see benchmarks/):
python-isal level 2 compresses 8 to 15 times faster than zlib level 6 (the level
``np.savez_compressed`` uses) for files 2 to 5 % larger, and inflates 2 to 3
times faster; zlib-ng level 6 is about 1.7 times faster than zlib at the same
size. Whichever is present is used, in that order; plain zlib always works.

Compression is split into chunks deflated in parallel threads (the libraries
release the GIL), pigz-style: each chunk ends with a sync flush, is primed with
the last 32 KB of the chunk before it, and the stream ends with an empty final
block. The result is one ordinary deflate stream that any inflater reads.
"""

from __future__ import annotations

import collections
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

WINDOW = 32 * 1024
_FINAL_EMPTY_BLOCK = b"\x03\x00"  # a final, empty, fixed-Huffman block


@dataclass(frozen=True)
class Backend:
    name: str
    module: ModuleType
    level: int

    @property
    def errors(self) -> tuple[type[Exception], ...]:
        """What the library raises on corrupt deflate data."""
        return (zlib.error, getattr(self.module, "error", zlib.error))


def _load(name: str) -> Backend | None:
    try:
        if name == "isal":
            from isal import isal_zlib

            return Backend("isal", isal_zlib, 2)
        if name == "zlib-ng":
            from zlib_ng import zlib_ng

            return Backend("zlib-ng", zlib_ng, 6)
    except ImportError:
        return None
    return Backend("zlib", zlib, 6)


def backend() -> Backend:
    """The backend to use: the one $KMX_TUNE_DEFLATE names if it is installed, else
    the fastest one that is."""
    prefer = os.environ.get("KMX_TUNE_DEFLATE")
    names = ["isal", "zlib-ng", "zlib"]
    if prefer in names:
        names.insert(0, prefer)
    for name in names:
        found = _load(name)
        if found is not None:
            return found
    raise AssertionError("zlib is always available")


def crc32(data: Any, value: int = 0) -> int:
    """CRC-32 of any buffer (bytes, memoryview, contiguous numpy array)."""
    return int(_CRC(data, value))


def _pick_crc() -> Callable[[Any, int], int]:
    for name in ("isal", "zlib-ng"):
        found = _load(name)
        if found is not None:
            return found.module.crc32
    return zlib.crc32


_CRC = _pick_crc()


def _deflate_chunk(be: Backend, data: bytes | memoryview, zdict: bytes | None) -> bytes:
    if zdict:
        co = be.module.compressobj(be.level, zlib.DEFLATED, -15, 8, 0, zdict)
    else:
        co = be.module.compressobj(be.level, zlib.DEFLATED, -15)
    return bytes(co.compress(data) + co.flush(zlib.Z_SYNC_FLUSH))


def deflate_chunks(chunks: Iterable[bytes | memoryview], be: Backend) -> Iterator[bytes]:
    """Deflate a stream given in chunks; yields the raw deflate output in order.

    At most one chunk more than there are threads is in flight, so memory stays bounded."""
    workers = max(1, min(4, os.cpu_count() or 1))
    pending: collections.deque[Future[bytes]] = collections.deque()
    prev_tail: bytes | None = None
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmx-deflate") as pool:
        for chunk in chunks:
            if not len(chunk):
                continue
            pending.append(pool.submit(_deflate_chunk, be, chunk, prev_tail))
            prev_tail = bytes(chunk[-WINDOW:])
            while len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    yield _FINAL_EMPTY_BLOCK


def inflater(be: Backend) -> object:
    """A raw-deflate decompressobj of ``be``."""
    return be.module.decompressobj(-15)
