"""Writing the output: past the page cache where the filesystem allows, into a
temporary file that becomes the output only once it is complete and on disk.

``DirectSink`` fills page-aligned buffers (mmap-allocated) and hands each full one
to a writer thread, so the transpose of the next chunk overlaps the write of the
last. Writes go through ``O_DIRECT`` in multiples of 4096 bytes; the unaligned tail
of a buffer moves to the front of the next, and the last block is padded and cut
back with ``ftruncate``. Where ``O_DIRECT`` is refused (tmpfs, some network
filesystems) the same writes go through the page cache instead.

The temporary file and its rename are :mod:`kmx_tune.fsio`'s; this module only says
what went wrong in the words a ``convert`` user sees.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import queue
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from kmx_tune import fsio
from kmx_tune.errors import KmxError

BLOCK = 4096  # O_DIRECT alignment that every Linux block device accepts
_O_DIRECT = getattr(os, "O_DIRECT", 0)


class DiskFullError(KmxError):
    pass


def _disk_full(path: Path) -> DiskFullError:
    return DiskFullError(
        f"{path.parent}: no space left on the device; nothing was written and the source is "
        "untouched; free some space or write elsewhere with -o"
    )


class DirectSink:
    """A write-only byte stream onto ``fd`` (opened by the caller, position 0)."""

    def __init__(self, fd: int, path: Path, chunk_bytes: int) -> None:
        self.fd = fd
        self.path = path
        self.direct = False
        if _O_DIRECT:
            try:
                flags = fcntl.fcntl(fd, fcntl.F_GETFL)
                fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
                self.direct = True
            except OSError:  # the filesystem does not do O_DIRECT at all
                self.direct = False
        self.chunk = max(BLOCK, -(-chunk_bytes // BLOCK) * BLOCK)
        self._size = self.chunk + 2 * BLOCK  # a chunk plus the carried unaligned tail
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        for _ in range(2):
            self._free.put(mmap.mmap(-1, self._size))
        self._jobs: queue.Queue[tuple[mmap.mmap, int, int] | None] = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._write_loop, name="kmx-writer", daemon=True)
        self._thread.start()
        self._buf = self._free.get()
        self._fill = 0  # bytes in self._buf
        self._offset = 0  # file offset of self._buf[0]
        self.written = 0  # bytes accepted so far (the final file size)

    # -- producer side -------------------------------------------------------------
    def reserve(self, n: int) -> memoryview:
        """Room for ``n`` bytes (at most ``chunk_bytes``) to fill in place; then :meth:`commit`."""
        if n > self.chunk:
            raise ValueError("reserve() larger than the chunk size")
        if self._fill + n > self._size:
            self._hand_off()
        return memoryview(self._buf)[self._fill : self._fill + n]

    def commit(self, n: int) -> None:
        self._fill += n
        self.written += n
        if self._fill >= self.chunk:
            self._hand_off()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            n = min(view.nbytes, self.chunk)
            self.reserve(n)[:] = view[:n]
            self.commit(n)
            view = view[n:]

    def close(self) -> int:
        """Write everything out, wait for it, fsync. Returns the file size."""
        tail = self._fill
        if tail:
            padded = -(-tail // BLOCK) * BLOCK
            self._buf[tail:padded] = bytes(padded - tail)
            self._jobs.put((self._buf, padded, self._offset))
        else:
            self._free.put(self._buf)
        self._jobs.put(None)
        self._thread.join()
        self._raise_if_failed()
        if tail:
            os.ftruncate(self.fd, self.written)
        try:
            os.fsync(self.fd)
        except OSError as exc:
            self._raise_os(exc)
        return self.written

    def abort(self) -> None:
        """Stop the writer thread after a failure (the caller removes the file)."""
        self._jobs.put(None)
        self._thread.join()

    # -- internals -----------------------------------------------------------------
    def _hand_off(self) -> None:
        self._raise_if_failed()
        aligned = self._fill - self._fill % BLOCK
        if aligned == 0:
            return
        nxt = self._free.get()
        tail = self._fill - aligned
        nxt[:tail] = self._buf[aligned : self._fill]
        self._jobs.put((self._buf, aligned, self._offset))
        self._buf, self._fill, self._offset = nxt, tail, self._offset + aligned

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            buf, n, offset = job
            try:
                if self._error is None:
                    self._pwrite_all(buf, n, offset)
            except BaseException as exc:  # handed to the producer, which raises it
                self._error = exc
            finally:
                self._free.put(buf)

    def _pwrite_all(self, buf: mmap.mmap, n: int, offset: int) -> None:
        view = memoryview(buf)
        done = 0
        while done < n:
            try:
                done += os.pwrite(self.fd, view[done:n], offset + done)
            except OSError as exc:
                if exc.errno == errno.EINVAL and self.direct:
                    # O_DIRECT opened but the write was refused: go through the page cache
                    flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
                    fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
                    self.direct = False
                    continue
                raise
        view.release()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            if isinstance(self._error, OSError):
                self._raise_os(self._error)
            raise self._error

    def _raise_os(self, exc: OSError) -> None:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(self.path) from None
        raise KmxError(f"{self.path}: cannot write: {exc.strerror}") from None


def size_text(n: float) -> str:
    """``300.1 KB``, ``1.2 GB``: decimal units, as the rest of convert's output."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def space_margin(need: int) -> int:
    """Room kept free beside an output of ``need`` bytes, for the file system's own
    blocks (inode, extents, the folder's entry): 64 KiB, up to 1 MiB for large files."""
    return min(1 << 20, max(64 << 10, need // 64))


def check_writable(folder: Path) -> None:
    """A folder on a read-only file system is refused as such (before the free-space
    check, which would otherwise blame the space)."""
    try:
        flags = os.statvfs(folder).f_flag
    except OSError:
        return  # the write itself will say what is wrong
    if flags & os.ST_RDONLY:
        raise KmxError(
            f"{folder}: read-only file system; nothing was written; write the output "
            "elsewhere with -o DIR/"
        )


def check_free_space(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    margin = space_margin(need)
    if need + margin > free:
        raise DiskFullError(
            f"{folder}: the output needs {size_text(need)} plus {size_text(margin)} kept free "
            f"for the file system, and {size_text(free)} is free; nothing was written; free "
            "some space or write elsewhere with -o"
        )


@contextlib.contextmanager
def open_temp(final: Path) -> Iterator[fsio.TempFile]:
    """:func:`kmx_tune.fsio.temp_output` for ``final``, failing in convert's words."""
    with contextlib.ExitStack() as stack:
        try:
            tmp = stack.enter_context(fsio.temp_output(final))
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _disk_full(final) from None
            raise KmxError(
                f"{final.parent}: cannot create the output there: {exc.strerror}; "
                "write it elsewhere with -o DIR/"
            ) from None
        yield tmp


def publish_output(tmp: Path, final: Path, *, overwrite: bool, like: Path | None = None) -> None:
    """:func:`kmx_tune.fsio.publish`; an output that exists says to pass ``--force``."""
    try:
        fsio.publish(tmp, final, overwrite=overwrite, like=like)
    except fsio.OutputExistsError:
        raise KmxError(f"{final} exists; pass --force to overwrite it") from None
