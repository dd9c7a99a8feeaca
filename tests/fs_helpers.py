"""Real unwritable folders and full disks for tests.

Root ignores mode bits, so as root an unwritable folder is a read-only bind mount of
itself and a full disk is a tiny tmpfs. As any other user, chmod 0o555 does the job and
a full disk is skipped (mount needs root)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(args: list[str]) -> bool:
    try:
        done = subprocess.run(args, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _umount(path: Path) -> None:
    # lazy unmount, so a file a failed test left open cannot keep the mount alive
    _run(["umount", "-l", str(path)])


@contextmanager
def unwritable_dir(path: Path) -> Iterator[Path]:
    """Make the existing folder ``path`` unwritable for this process until the block ends."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(mode)
        return
    if shutil.which("mount") is None:
        pytest.skip("running as root without mount(8): cannot make a folder unwritable")
    if not _run(["mount", "--bind", str(path), str(path)]):
        pytest.skip("running as root and bind mounts are not permitted here")
    try:
        if not _run(["mount", "-o", "remount,bind,ro", str(path), str(path)]):
            pytest.skip("running as root and read-only remounts are not permitted here")
        assert not os.access(path, os.W_OK)
        yield path
    finally:
        _umount(path)


@contextmanager
def tiny_disk(path: Path, size_kib: int = 16) -> Iterator[Path]:
    """Mount a ``size_kib`` tmpfs on the new folder ``path`` (needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk needs root to mount a tiny tmpfs")
    if not _run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)]):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        yield path
    finally:
        _umount(path)


def fill_disk(folder: Path) -> None:
    """Fill the file system holding ``folder`` until writes fail with ENOSPC."""
    for name, chunk in (("filler", 4096), ("filler2", 1)):  # pages, then any last bytes
        fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * chunk)
        except OSError:
            pass
        finally:
            os.close(fd)


def sha(path: Path) -> str:
    """The file's sha256, read in 1 MB blocks (datasets can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def temps(folder: Path) -> list[Path]:
    """kmx-tune's temporary files in *folder* (fsio's naming)."""
    from kmx_tune.fsio import TEMP_MARK

    return [p for p in folder.iterdir() if TEMP_MARK in p.name]
