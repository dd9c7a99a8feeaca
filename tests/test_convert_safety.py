"""Never lose data: kill -9 at random moments, full disks, stale temporary files."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kmx_tune import fsio
from kmx_tune.convert import convert_file, writer
from kmx_tune.convert.writer import DiskFullError
from kmx_tune.errors import KmxError
from kmx_tune.fsio import TEMP_MARK
from tests.fs_helpers import sha, temps


def start(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kmx_tune", "convert", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_mid_way(args: list[str], final: Path, at_bytes: int) -> Path | None:
    """Run ``kmx-tune convert ARGS`` and kill -9 it once its temporary output for
    ``final`` holds ``at_bytes``. The run is frozen (SIGSTOP) before the temporary file
    is looked at again, so the kill lands at the moment that was checked. Returns that
    temporary file, or None when the run got past it (it finished, or renamed the file)
    before it could be frozen."""
    proc = start(args)
    prefix = f".{final.name}{TEMP_MARK}{proc.pid}-"
    try:
        while proc.poll() is None:
            mine = [p for p in temps(final.parent) if p.name.startswith(prefix)]
            with contextlib.suppress(FileNotFoundError):
                if mine and mine[0].stat().st_size >= at_bytes:
                    proc.send_signal(signal.SIGSTOP)
                    _, status = os.waitpid(proc.pid, os.WUNTRACED)
                    if not os.WIFSTOPPED(status):
                        return None  # it exited first
                    return mine[0] if mine[0].exists() else None
            time.sleep(0.001)
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.kill
@pytest.mark.parametrize(("kind", "kills"), [("npy", 14), ("npz", 6), ("npz_compressed", 4)])
def test_kill_9_at_random_moments(tmp_path: Path, kind: str, kills: int) -> None:
    """24 kills in all, each while the run's temporary output exists, at a random point
    of it being written, checked and renamed. After each: the source is byte-identical,
    the final name is absent or holds the complete, correct output, and the only
    temporary file is the killed run's (it removed what earlier runs left). The next
    run removes that one too, and says so."""
    work = tmp_path / "w"
    work.mkdir()
    rng = np.random.default_rng(7)
    x = rng.integers(0, 255, (2600 if kind != "npz_compressed" else 700, 96, 96, 3), np.uint8)
    if kind == "npy":
        src = work / "x.npy"
        np.save(src, x)
    else:
        src = work / "x.npz"
        (np.savez_compressed if kind == "npz_compressed" else np.savez)(src, x=x, y=np.arange(9))
    final = work / f"x.channels_first{src.suffix}"
    src_sha = sha(src)
    subprocess.run(
        [sys.executable, "-m", "kmx_tune", "convert", str(src)], check=True, capture_output=True
    )
    good_sha, good_size = sha(final), final.stat().st_size
    random.seed(kind)
    killed = 0
    for _ in range(3 * kills):  # a run that gets past its moment is tried again
        if killed == kills:
            break
        final.unlink(missing_ok=True)
        tmp = kill_mid_way([str(src)], final, int(random.uniform(0.0, 1.0) * good_size))
        assert sha(src) == src_sha
        if final.exists():  # killed between the rename and removing the temporary name
            assert sha(final) == good_sha
        if tmp is not None:
            killed += 1
            assert temps(work) == [tmp]
    assert killed == kills
    # the next run removes what the killed run left behind, and says so
    final.unlink(missing_ok=True)
    left = temps(work)
    result = convert_file(src)
    assert sorted(result.removed_temps) == sorted(str(p) for p in left)
    assert temps(work) == [] and sha(final) == good_sha and sha(src) == src_sha


@pytest.mark.kill
def test_kill_9_in_place(tmp_path: Path) -> None:
    """With --in-place the source is the old file until the new one, complete and
    verified, replaces it in one rename: a run killed before that leaves it as it was."""
    work = tmp_path / "w"
    work.mkdir()
    x = np.random.default_rng(3).integers(0, 255, (2000, 64, 64, 3), np.uint8)
    src = work / "x.npy"
    np.save(src, x)
    old, size = sha(src), src.stat().st_size
    random.seed(1)
    killed = 0
    for _ in range(18):
        if killed == 6:
            break
        tmp = kill_mid_way([str(src), "--in-place"], src, int(random.uniform(0.0, 1.0) * size))
        if tmp is None:  # it finished: the whole new file, which is put back for the next try
            assert np.array_equal(np.load(src), x.transpose(0, 3, 1, 2))
            np.save(src, x)
            continue
        killed += 1
        assert sha(src) == old


@contextlib.contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("cannot mount a tmpfs here (needs root); the ENOSPC seam test still runs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("kind", ["npy", "npz_compressed"])
def test_full_disk_is_refused_up_front(tmp_path: Path, kind: str) -> None:
    x = np.random.default_rng(0).integers(0, 255, (200, 64, 64, 3), np.uint8)  # 2.4 MB
    src = tmp_path / ("x.npy" if kind == "npy" else "x.npz")
    if kind == "npy":
        np.save(src, x)
    else:
        np.savez_compressed(src, x=x)
    before = sha(src)
    with small_tmpfs(tmp_path / "small", "2m") as small:
        full = "needs .* MB plus .* kept free .* is free; nothing was written"
        with pytest.raises(DiskFullError, match=full):
            convert_file(src, small / f"x.channels_first{src.suffix}")
        assert list(small.iterdir()) == []
    assert sha(src) == before


@pytest.mark.parametrize("kind", ["npy", "npz", "npz_compressed"])
def test_disk_filling_up_mid_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The free-space check passed, then the disk filled up (another writer, a wrong
    estimate): the real ENOSPC from a full tmpfs gives a clear error, no output."""
    x = np.random.default_rng(0).integers(0, 255, (300, 64, 64, 3), np.uint8)  # 3.7 MB
    src = tmp_path / ("x.npy" if kind == "npy" else "x.npz")
    if kind == "npy":
        np.save(src, x)
    else:
        (np.savez if kind == "npz" else np.savez_compressed)(src, x=x)
    before = sha(src)
    monkeypatch.setattr("kmx_tune.convert.common.check_free_space", lambda *a: None)
    with small_tmpfs(tmp_path / "small", "2m") as small:
        with pytest.raises(DiskFullError, match="no space left on the device"):
            convert_file(src, small / f"x.channels_first{src.suffix}", chunk_bytes=256 << 10)
        assert list(small.iterdir()) == []
    assert sha(src) == before


def test_enospc_at_the_write_seam(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs everywhere (no mount needed): ENOSPC from the write call itself."""
    x = np.random.default_rng(0).integers(0, 255, (300, 32, 32, 3), np.uint8)
    src = tmp_path / "x.npy"
    np.save(src, x)
    real = os.pwrite
    calls = {"n": 0}

    def failing_pwrite(fd: int, data: memoryview, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(writer.os, "pwrite", failing_pwrite)
    with pytest.raises(KmxError, match="no space left"):
        convert_file(src, chunk_bytes=64 << 10)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npy") == ["x.npy"]
    assert temps(tmp_path) == []


def test_stale_temps_of_live_runs_are_kept(tmp_path: Path) -> None:
    """A temporary file is in use while a process has it open for writing, whatever its
    PID says; one that nobody has open is left over, even under this process's PID."""
    final = tmp_path / "x.channels_first.npy"
    dead = tmp_path / f".{final.name}{TEMP_MARK}999999999-abcd1234"
    unheld = tmp_path / f".{final.name}{TEMP_MARK}{os.getpid()}-abcd1234"
    other = tmp_path / ".unrelated.kmx-tmp-1-x"
    for p in (dead, unheld, other):
        p.write_bytes(b"partial")
    with fsio.temp_output(final) as live:
        assert sorted(fsio.clean_stale_temps(final)) == sorted([dead, unheld])
        assert live.path.exists() and other.exists()
        # another writer (HDF5, say) may lock the file it writes: that is not refused
        fd = os.open(live.path, os.O_WRONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    assert fsio.clean_stale_temps(final) == [live.path]  # closed unpublished: left over
