"""Writing files so that a crash, a kill -9 or a full disk never leaves a half-written
one under its real name: every writer in kmx-tune goes through here.

The pattern is always the same: write a temporary file in the destination's folder
(``.NAME.kmx-tmp-PID-XXXXXXXX``), fsync it, give it the mode (and, where allowed, the
owner) of the file it replaces, rename it over the final name, fsync the folder.

Temporary files that a killed run left behind are recognised by that name and removed
by the next run that writes the same file. Whether a run is still using one is told by
a lock, not by its PID (a PID means nothing across PID namespaces, and containers sharing
a folder each have their own): the writer holds an exclusive ``flock`` on its temporary
file for as long as it is open, and the kernel drops the lock when the process dies,
however it dies. The file is created under a ``.pending`` name, locked, and only then
renamed to the name that cleanup looks at, so no run ever sees it unlocked while in use.
Where a file system has no ``flock``, the PID rule is the fallback.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEMP_MARK = ".kmx-tmp-"
_PENDING = ".pending"  # a temporary file that is not locked yet
_PENDING_STALE_S = 60.0  # a pending file this old was left by a run killed at that instant


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


def _locked_by_a_run(path: Path) -> bool | None:
    """Whether a live run holds the lock on *path*: True, False, or None where the file
    system cannot say (no flock there) or the file is gone."""
    fd = -1
    # opened for writing where allowed: NFS turns flock into a POSIX lock, which needs it
    for access in (os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, access | os.O_NOFOLLOW | os.O_NONBLOCK)
            break
        except PermissionError:
            continue
        except OSError:
            return None
    if fd < 0:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # (and with it any lock just taken)
    return False


def clean_stale_temps(final: Path) -> list[Path]:
    """Remove the temporary files that interrupted runs left for *final*.

    Only names made by :func:`temp_name` that no live run holds locked are removed
    (a pending one only once it is a minute old); on a file system without locks, only
    those whose PID is gone. A run still in progress keeps its file."""
    removed: list[Path] = []
    prefix = f".{final.name}{TEMP_MARK}"
    with contextlib.suppress(OSError):
        for entry in final.parent.iterdir():
            if not entry.name.startswith(prefix):
                continue
            pid_text = entry.name[len(prefix) :].split("-", 1)[0]
            if not pid_text.isdigit():
                continue
            locked = _locked_by_a_run(entry)
            if locked is None:
                locked = _alive(int(pid_text))
            if locked:
                continue
            if entry.name.endswith(_PENDING):
                with contextlib.suppress(OSError):
                    if time.time() - entry.lstat().st_mtime < _PENDING_STALE_S:
                        continue  # perhaps a run about to lock it
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _create_locked(tmp: Path, mode: int) -> int:
    """Create *tmp* open for writing, holding its lock before anyone can find it by that
    name (see the module docstring)."""
    pending = tmp.with_name(tmp.name + _PENDING)
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with contextlib.suppress(OSError):  # no flock here: cleanup falls back to PIDs
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(pending, tmp)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            pending.unlink()
        raise
    return fd


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
    """A new temporary file beside *final*, open for writing and locked while it is open
    (publish it before the block ends). Removed when the block fails; kept when it
    succeeds, for :func:`publish` to give it its name. Raises OSError when it cannot be
    created."""
    tmp = temp_name(final)
    fd = _create_locked(tmp, mode)
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
        view = memoryview(data)
        while view:
            view = view[os.write(tmp.fd, view) :]
        if like is not None:
            take_metadata(tmp.fd, like)
        os.fsync(tmp.fd)
        os.replace(tmp.path, path)  # while it is open, and so locked
    fsync_dir(path.parent)
