"""HDF5 conversions never lose data: kill -9 mid-way, a full disk (real tmpfs), an
unwritable folder."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kmx_tune.convert import convert_file
from kmx_tune.convert.writer import DiskFullError
from kmx_tune.errors import KmxError
from kmx_tune.fsio import TEMP_MARK
from tests.fs_helpers import sha, temps, tiny_disk, unwritable_dir

X = np.random.default_rng(1).integers(0, 255, (300, 64, 64, 3), np.uint8)  # 3.7 MB


def make(path: Path, x: np.ndarray, **storage: object) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, **storage)  # type: ignore[arg-type]
        f.create_dataset("y", data=np.arange(len(x)))


@pytest.mark.parametrize("storage", [{}, {"compression": "gzip", "chunks": (20, 64, 64, 3)}])
def test_full_disk_refused_up_front(tmp_path: Path, storage: dict[str, object]) -> None:
    src = tmp_path / "x.h5"
    make(src, X, **storage)
    before = sha(src)
    with tiny_disk(tmp_path / "small", 64) as small:
        full = "needs .* plus .* kept free for the file system, and .* is free; nothing was written"
        with pytest.raises(DiskFullError, match=full):
            convert_file(src, small / "x.channels_first.h5")
        assert list(small.iterdir()) == []
    assert sha(src) == before


def test_disk_filling_up_mid_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The free-space check passed, then the disk filled: HDF5's write error becomes the
    one line about space, the temporary file goes, the source is untouched."""
    src = tmp_path / "x.h5"
    make(src, X)
    before = sha(src)
    monkeypatch.setattr("kmx_tune.convert.common.check_free_space", lambda *a: None)
    with tiny_disk(tmp_path / "small", 2048) as small:
        with pytest.raises(DiskFullError, match="no space left on the device") as err:
            convert_file(src, small / "x.channels_first.h5")
        assert "\n" not in str(err.value)
        assert list(small.iterdir()) == []
    assert sha(src) == before


def test_unwritable_folder_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "x.h5"
    make(src, X[:10])
    out = tmp_path / "ro"
    out.mkdir()
    with unwritable_dir(out), pytest.raises(KmxError) as err:
        convert_file(src, out / "x.channels_first.h5")
    assert "\n" not in str(err.value) and "x.channels_first.h5" not in os.listdir(out)


def kill_mid_way(args: list[str], final: Path, at_bytes: int) -> Path | None:
    """Start ``kmx-tune convert ARGS``; once its temporary output for ``final`` holds
    ``at_bytes``, freeze it (SIGSTOP) and kill -9 it. Returns that temporary file, or
    None when the run got past that moment first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmx_tune", "convert", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f".{final.name}{TEMP_MARK}{proc.pid}-"
    try:
        while proc.poll() is None:
            mine = [p for p in temps(final.parent) if p.name.startswith(prefix)]
            with contextlib.suppress(FileNotFoundError):
                if mine and mine[0].stat().st_size >= at_bytes:
                    proc.send_signal(signal.SIGSTOP)
                    _, status = os.waitpid(proc.pid, os.WUNTRACED)
                    if not os.WIFSTOPPED(status):
                        return None
                    return mine[0] if mine[0].exists() else None
            time.sleep(0.001)
        return None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.mark.kill
@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_kill_9_at_random_moments(tmp_path: Path, compressed: bool) -> None:
    """Killed while its temporary output grows: the source is byte-identical, the final
    name absent (or complete and right), and the next run removes the leftovers."""
    work = tmp_path / "w"
    work.mkdir()
    x = np.random.default_rng(2).integers(0, 255, (3000, 64, 64, 3), np.uint8)  # 37 MB
    src = work / "x.h5"
    make(src, x, **({"compression": "gzip", "chunks": (50, 64, 64, 3)} if compressed else {}))
    final = work / "x.channels_first.h5"
    src_sha = sha(src)
    subprocess.run(
        [sys.executable, "-m", "kmx_tune", "convert", str(src)], check=True, capture_output=True
    )
    good_size = final.stat().st_size
    with h5py.File(final) as f:
        good = f["x"][::500].copy()
    random.seed(str(compressed))
    killed = 0
    for _ in range(15):
        if killed == 5:
            break
        final.unlink(missing_ok=True)
        tmp = kill_mid_way([str(src)], final, int(random.uniform(0.05, 0.95) * good_size))
        assert sha(src) == src_sha
        if final.exists():
            with h5py.File(final) as f:
                np.testing.assert_array_equal(f["x"][::500], good)
        if tmp is not None:
            killed += 1
    assert killed >= 3
    final.unlink(missing_ok=True)
    left = temps(work)
    assert left
    result = convert_file(src)
    assert sorted(result.removed_temps) == sorted(str(p) for p in left)
    assert temps(work) == [] and sha(src) == src_sha
    with h5py.File(final) as f:
        np.testing.assert_array_equal(f["x"][:], x.transpose(0, 3, 1, 2))
