"""Writing files so that a crash, a kill -9 or a full disk never leaves a half-written
one under its real name: every writer in kmx-tune goes through here.

The pattern is always the same: write a temporary file in the destination's folder
(``.NAME.kmx-tmp-PID-XXXXXXXX``), fsync it, give it the mode (and, where allowed, the
owner) of the file it replaces, rename it over the final name, fsync the folder.

Temporary files that a killed run left behind are recognised by that name and removed
by the next run that writes the same file. Whether a run is still using one is asked of
the kernel, not told by its PID (a PID means nothing across PID namespaces, and
containers sharing a folder each have their own): a writer keeps its temporary file open
for writing from the moment it creates it (``O_CREAT | O_EXCL``) until it is published,
and the kernel closes it when the process dies, however it dies. Cleanup asks for a read
lease (``F_SETLEASE``), which the kernel grants only when no process anywhere has the
file open for writing. (Not a lock: HDF5 and others lock the files they write with
``flock``, and would be refused.) Where a file system has no leases, or the file is
another user's, the PID rule is the fallback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import signal
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEMP_MARK = ".kmx-tmp-"


class NotARegularFile(Exception):
    """:func:`read_bounded` found a folder, a FIFO, a device or a socket (``kind``:
    ``stat.S_IFMT`` of its mode) where a file was expected."""

    def __init__(self, kind: int) -> None:
        super().__init__(kind)
        self.kind = kind


class TooLarge(Exception):
    """:func:`read_bounded` found more than its limit: ``size`` bytes, at least."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def read_bounded(path: os.PathLike[str] | str, limit: int) -> bytes:
    """The bytes of the regular file at *path* (a symlink is followed), at most *limit*.
    Never blocks on a FIFO and never reads a device: the file is opened without
    blocking and checked before a byte is read. Raises OSError (FileNotFoundError, ...),
    :class:`NotARegularFile`, or :class:`TooLarge` (also when it grows while read)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        kind = stat.S_IFMT(st.st_mode)
        if kind != stat.S_IFREG:
            raise NotARegularFile(kind)
        if st.st_size > limit:
            raise TooLarge(st.st_size)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise TooLarge(max(size, st.st_size))
        return b"".join(chunks)
    finally:
        os.close(fd)


def not_a_file(path: Path) -> str:
    """Why *path* is no regular file, in words: "no such file", "is a folder", or "is
    not a regular file (a FIFO, a device or a socket)". Never opens it, so a FIFO cannot
    hang the caller."""
    if path.is_dir():
        return "is a folder"
    if os.path.lexists(path):
        return "is not a regular file (a FIFO, a device or a socket)"
    return "no such file"


def temp_name(final: Path) -> Path:
    """The temporary name for *final*, in the same folder (so the rename is atomic)."""
    return final.with_name(f".{final.name}{TEMP_MARK}{os.getpid()}-{secrets.token_hex(4)}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _written_to(path: Path) -> bool | None:
    """Whether some process, in any PID namespace, has *path* open for writing: True,
    False, or None where the kernel cannot say here (a file system without leases, a
    file of another user's) or the file is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        # a writer opening the file in the instant the lease is held would send this
        # process SIGIO, which kills; SIGURG is ignored unless someone asks for it
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno in (errno.EAGAIN, errno.EBUSY) else None
    finally:
        os.close(fd)  # (and with it the lease)
    return False


def clean_stale_temps(final: Path) -> list[Path]:
    """Remove the temporary files that interrupted runs left for *final*.

    Only names made by :func:`temp_name` that no process has open for writing are
    removed (where the kernel cannot tell, only those whose PID is gone): a run still in
    progress keeps its file."""
    removed: list[Path] = []
    prefix = f".{final.name}{TEMP_MARK}"
    with contextlib.suppress(OSError):
        for entry in final.parent.iterdir():
            if not entry.name.startswith(prefix):
                continue
            pid_text = entry.name[len(prefix) :].split("-", 1)[0]
            if not pid_text.isdigit():
                continue
            in_use = _written_to(entry)
            if in_use is None:
                in_use = _alive(int(pid_text))
            if in_use:
                continue
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in *folder* durable. Some file systems cannot fsync a folder; the
    rename is atomic all the same, so that is not an error."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def take_metadata(fd: int, like: os.stat_result) -> None:
    """Give the open file *fd* the mode of *like* and, where this process may (root),
    its owner: a private file that is replaced stays private."""
    os.fchmod(fd, stat.S_IMODE(like.st_mode))
    if (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(OSError):  # only root may give a file away
            os.fchown(fd, like.st_uid, like.st_gid)


@dataclass
class TempFile:
    path: Path
    fd: int


@contextlib.contextmanager
def temp_output(final: Path, mode: int = 0o644) -> Iterator[TempFile]:
    """A new temporary file beside *final*, open for writing: while it is, no other run
    takes it for a leftover (publish it before the block ends). Removed when the block
    fails; kept when it succeeds, for :func:`publish` to give it its name. Raises
    OSError when it cannot be created."""
    tmp = temp_name(final)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    handle = TempFile(tmp, fd)
    ok = False
    try:
        yield handle
        ok = True
    finally:
        if handle.fd >= 0:
            os.close(handle.fd)
            handle.fd = -1
        if not ok:
            with contextlib.suppress(OSError):
                tmp.unlink()


def fill(tmp: TempFile, data: bytes, like: os.stat_result | None = None) -> None:
    """Write all of *data* into the open temporary file, give it *like*'s mode and owner
    (when given), and fsync it. It stays open, and so in use, until it is published."""
    view = memoryview(data)
    while view:
        view = view[os.write(tmp.fd, view) :]
    if like is not None:
        take_metadata(tmp.fd, like)
    os.fsync(tmp.fd)


class OutputExistsError(FileExistsError):
    """The final name is taken and overwriting was not allowed."""


def publish(tmp: Path, final: Path, *, overwrite: bool = True, like: Path | None = None) -> None:
    """Give the complete, synced temporary file *tmp* its final name, atomically.

    *like*: a file whose mode and owner the new one takes (the input that ``--in-place``
    replaces). Without *overwrite*, an existing *final* is never replaced, not even by
    a race: raises :class:`OutputExistsError`."""
    if like is not None:
        fd = os.open(tmp, os.O_RDONLY)
        try:
            take_metadata(fd, os.stat(like))
        finally:
            os.close(fd)
    if overwrite:
        os.replace(tmp, final)
    else:
        try:
            # a hard link fails if the name exists: no window in which to clobber it
            os.link(tmp, final)
        except FileExistsError:
            raise OutputExistsError(errno.EEXIST, "exists", str(final)) from None
        except OSError:  # no hard links here (some network and FAT file systems)
            if os.path.lexists(final):
                raise OutputExistsError(errno.EEXIST, "exists", str(final)) from None
            os.replace(tmp, final)
        else:
            tmp.unlink()
    fsync_dir(final.parent)


def atomic_write(
    path: Path, data: bytes, *, like: os.stat_result | None = None, mode: int = 0o666
) -> None:
    """Replace (or create) *path* with *data* atomically. *like*: the stat of the file
    being replaced, whose mode and owner are kept; a new file gets *mode* less the
    umask, as ``open(path, 'w')`` would. Raises OSError; *path* is then untouched."""
    clean_stale_temps(path)
    with temp_output(path, mode if like is None else 0o600) as tmp:
        fill(tmp, data, like)
        os.replace(tmp.path, path)  # while it is open, and so in use
    fsync_dir(path.parent)
