"""What keeps an edit of keras.json safe from other processes and other users: the lock
that serialises edits, a hidden ``.keras.json.lock`` beside the file that is never
opened through a symlink, and the refusal to follow a symlink planted in a folder that
another user owns or may write to (the shared ``/tmp/.keras`` fallback)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from kmx_tune.errors import KmxError
from kmx_tune.keras_config.locate import LOCK_TIMEOUT_S, KerasJsonLocation


def lock_path(target: Path) -> Path:
    """The hidden lock file beside *target*."""
    return target.with_name(f".{target.name}.lock")


def legacy_lock_path(target: Path) -> Path:
    """Where kmx-tune 0.1 kept its lock, in sight: removed when nobody holds it."""
    return target.with_name(target.name + ".lock")


def why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def write_error(exc: OSError, what: Path, original: Path) -> KmxError:
    untouched = f"{original} was not changed" if original.exists() else "nothing was written"
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return KmxError(
            f"no space left on the disk holding {what}; {untouched}. Free some space and rerun"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return KmxError(
            f"cannot write in {what.parent} ({why(exc)}); {untouched}. Fix its permissions, "
            "or set KERAS_HOME (or --keras-home) to a writable folder"
        )
    return KmxError(f"cannot write {what} ({why(exc)}); {untouched}")


_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_lock(lock: Path, target: Path) -> int:
    """Open (or create) the lock file; never through a symlink, never a FIFO or device."""
    try:
        fd = os.open(lock, _LOCK_FLAGS | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KmxError(
                f"{lock} is a symlink: kmx-tune never follows one for its lock (someone may "
                f"have planted it); remove it (rm {lock}) and rerun"
            ) from exc
        raise write_error(exc, lock, target) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise KmxError(f"{lock} is not a regular file; remove it and rerun")
    return fd


def _remove_legacy_lock(target: Path) -> None:
    """Remove the ``keras.json.lock`` an older kmx-tune left, if no process holds it (a
    planted symlink there is neither followed nor removed)."""
    legacy = legacy_lock_path(target)
    try:
        fd = os.open(legacy, _LOCK_FLAGS)
    except OSError:
        return
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(legacy)
    except OSError:
        pass  # held by an older kmx-tune that is running now: its file, left alone
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(target: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive flock on the hidden ``.<target>.lock`` (never on the file that
    is renamed).

    The lock file stays after the run: deleting it would let a waiting process lock an
    unlinked inode while a third creates a fresh one. It is hidden instead."""
    lock = lock_path(target)
    fd = _open_lock(lock, target)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KmxError(
                        f"another program has held {lock} for {timeout_s:.0f}s; "
                        "wait for it to finish and rerun"
                    ) from None
                time.sleep(0.02)
        _remove_legacy_lock(target)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _owner(uid: int) -> str:
    import pwd

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def refuse_planted_links(location: KerasJsonLocation) -> None:
    """In a folder that another user owns or may write to (the shared /tmp/.keras
    fallback above all), a symlink may have been planted to make this user create or
    replace a file elsewhere: refuse to follow one there."""
    folder = location.path.parent
    me = os.geteuid()
    try:
        lst = os.lstat(folder)
    except OSError:
        return  # this run creates it, owned by this user
    advice = "replace it with a real file, or set KERAS_HOME (or --keras-home) to a folder of yours"
    if stat.S_ISLNK(lst.st_mode) and (location.tmp_fallback or lst.st_uid != me):
        raise KmxError(
            f"{folder} is a symlink (to {os.readlink(folder)}) owned by {_owner(lst.st_uid)} in a "
            f"shared place; kmx-tune will not follow it: set KERAS_HOME (or --keras-home) to a "
            "folder of yours"
        )
    try:
        st = os.stat(folder)
    except OSError:
        return
    shared = location.tmp_fallback or st.st_uid != me or bool(st.st_mode & stat.S_IWOTH)
    if shared and location.path.is_symlink():
        raise KmxError(
            f"{location.path} is a symlink (to {os.readlink(location.path)}) in {folder}, a folder "
            f"owned by {_owner(st.st_uid)} that others may write to; kmx-tune will not follow "
            f"it there: {advice}"
        )
