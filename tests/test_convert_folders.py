"""`kmx-tune convert DIR`: walking a tree, several files at once, and resuming a run that
was interrupted (kill -9) without redoing what is complete and verified."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kmx_tune.convert import record
from kmx_tune.convert.core import convert_many
from kmx_tune.fsio import TEMP_MARK
from tests.cli import kmx, kmx_json

X = np.random.default_rng(3).integers(0, 255, (40, 12, 10, 3), np.uint8)


def make_tree(root: Path) -> list[Path]:
    """A dataset tree: shards at two depths, all three formats, plus what must be left
    alone (a hidden folder, an earlier output, a text file)."""
    (root / "train" / "part1").mkdir(parents=True)
    (root / "test").mkdir()
    (root / ".cache").mkdir()
    files = []
    for i in range(3):
        p = root / "train" / f"shard{i}.npy"
        np.save(p, X + i)
        files.append(p)
    np.savez(root / "train" / "part1" / "more.npz", x=X, y=np.arange(40))
    with h5py.File(root / "test" / "t.h5", "w") as f:
        f.create_dataset("x", data=X, compression="gzip")
    files += [root / "train" / "part1" / "more.npz", root / "test" / "t.h5"]
    np.save(root / ".cache" / "hidden.npy", X)
    np.save(root / "train" / "old.channels_first.npy", X.transpose(0, 3, 1, 2))
    (root / "README.txt").write_text("not data")
    return files


def test_only_direct_files_without_recursive(tmp_path: Path) -> None:
    make_tree(tmp_path / "d")
    r = kmx("convert", str(tmp_path / "d" / "train"), "--dry-run")
    assert r.exit_code == 0
    assert r.stdout.count("(dry run: nothing written)") == 3  # the shards, not part1/


def test_recursive_keeps_the_tree_under_o(tmp_path: Path) -> None:
    files = make_tree(tmp_path / "d")
    out = tmp_path / "out"
    code, data = kmx_json("convert", str(tmp_path / "d"), "-r", "-o", str(out))
    assert code == 0
    assert sorted(Path(f["path"]) for f in data["files"]) == sorted(files)
    assert {f["status"] for f in data["files"]} == {"converted"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "test/t.channels_first.h5",
        "train/part1/more.channels_first.npz",
        "train/shard0.channels_first.npy",
        "train/shard1.channels_first.npy",
        "train/shard2.channels_first.npy",
    ]
    np.testing.assert_array_equal(
        np.load(out / "train" / "shard2.channels_first.npy"), (X + 2).transpose(0, 3, 1, 2)
    )


def test_output_folder_inside_the_input_is_not_walked(tmp_path: Path) -> None:
    make_tree(tmp_path / "d")
    out = tmp_path / "d" / "converted"
    assert kmx("convert", str(tmp_path / "d"), "-r", "-o", str(out)).exit_code == 0
    code, data = kmx_json("convert", str(tmp_path / "d"), "-r", "-o", str(out))
    assert code == 0 and len(data["files"]) == 5
    assert {f["status"] for f in data["files"]} == {"skipped"}


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_rerun_skips_what_is_done_and_redoes_what_is_not(tmp_path: Path, jobs: str) -> None:
    make_tree(tmp_path / "d")
    root = tmp_path / "d"
    assert kmx("convert", str(root), "-r", "-j", jobs).exit_code == 0
    outs = sorted(root.rglob("*.channels_first.*"))
    outs.remove(root / "train" / "old.channels_first.npy")
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in outs}
    gone = root / "train" / "shard1.channels_first.npy"
    gone.unlink()
    r = kmx("convert", str(root), "-r", "-j", jobs)
    assert r.exit_code == 0
    assert r.stdout.count("(already converted and verified)") == 4 and r.stdout.count("✓") == 1
    for p, stamp in before.items():
        if p != gone:
            assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp  # not rewritten
    np.testing.assert_array_equal(np.load(gone), (X + 1).transpose(0, 3, 1, 2))


def test_a_changed_source_is_not_skipped(tmp_path: Path) -> None:
    """The record names the source as it was: a source rewritten since does not match,
    and the existing output is not overwritten without --force."""
    root = tmp_path / "d"
    make_tree(root)
    assert kmx("convert", str(root), "-r").exit_code == 0
    time.sleep(0.01)
    np.save(root / "train" / "shard0.npy", X[:10])
    r = kmx("convert", str(root), "-r")
    assert r.exit_code == 1 and "shard0.channels_first.npy exists; pass --force" in r.stdout
    assert kmx("convert", str(root), "-r", "--force").exit_code == 0
    assert np.load(root / "train" / "shard0.channels_first.npy").shape == (10, 3, 12, 10)


def test_other_options_are_not_the_same_output(tmp_path: Path) -> None:
    src = tmp_path / "d" / "g.npz"
    src.parent.mkdir()
    np.savez(src, x=X, gray=X[..., 0])
    convert_many([src.parent])
    out = tmp_path / "d" / "g.channels_first.npz"
    assert record.matches(out, src, to="channels_first", keys=(), add_channel_axis=False)
    assert not record.matches(out, src, to="channels_first", keys=(), add_channel_axis=True)
    again = convert_many([src.parent], add_channel_axis=True)
    assert again.files[0].status == "failed" and "exists" in again.files[0].message


def test_a_file_not_written_by_kmx_tune_is_not_skipped(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    np.save(root / "a.npy", X)
    np.save(root / "a.channels_first.npy", X.transpose(0, 3, 1, 2))  # made by hand
    report = convert_many([root])
    assert report.files[0].status == "failed" and "pass --force" in report.files[0].message


def test_parallel_run_with_a_broken_file(tmp_path: Path) -> None:
    root = tmp_path / "d"
    make_tree(root)
    (root / "train" / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    r = kmx("convert", str(root), "-r", "--jobs", "2")
    assert r.exit_code == 1
    assert r.stdout.count("✓") == 5 and r.stdout.count("✗") == 1
    assert r.stderr == "Error: 1 of 6 files failed; see above\n"
    assert not [p for p in root.rglob("*") if TEMP_MARK in p.name]


def test_jobs_must_be_positive(tmp_path: Path) -> None:
    make_tree(tmp_path / "d")
    r = kmx("convert", str(tmp_path / "d"), "--jobs", "0")
    assert r.exit_code == 2 and "--jobs 0" in r.stderr


def _wait_group_gone(pgid: int) -> None:
    """Until every process of the killed group (the workers too) has been reaped."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)


def _outputs(root: Path) -> dict[Path, tuple[int, int]]:
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*.channels_first.npy")
        if TEMP_MARK not in p.name
    }


@pytest.mark.kill
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_9_then_resume(tmp_path: Path, jobs: str) -> None:
    """kill -9 (the whole process group, workers too) once some shards are done. The
    rerun skips every output that was complete, rewrites none of them, converts the
    rest, and leaves no temporary file; every output matches its source."""
    root = tmp_path / "shards"
    rng = np.random.default_rng(9)
    sources = {}
    for i in range(24):
        (root / f"g{i % 3}").mkdir(parents=True, exist_ok=True)
        p = root / f"g{i % 3}" / f"s{i:02d}.npy"
        x = rng.integers(0, 255, (200, 64, 64, 3), np.uint8)  # 2.5 MB
        np.save(p, x)
        sources[p] = x
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmx_tune", "convert", str(root), "-r", "-j", jobs],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(_outputs(root)) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _wait_group_gone(proc.pid)
    done = _outputs(root)
    assert 8 <= len(done) < 24, "the run was not interrupted mid-way; make the shards bigger"
    report = convert_many([root], recursive=True)
    statuses = {Path(f.path): f.status for f in report.files}
    for out, stamp in done.items():
        src = out.with_name(out.name.replace(".channels_first", ""))
        assert statuses[src] == "skipped"
        assert (out.stat().st_ino, out.stat().st_mtime_ns) == stamp
    assert sum(s == "converted" for s in statuses.values()) == 24 - len(done)
    assert not [p for p in root.rglob("*") if TEMP_MARK in p.name]
    for src, x in sources.items():
        out = src.with_name(src.stem + ".channels_first.npy")
        np.testing.assert_array_equal(np.load(out), x.transpose(0, 3, 1, 2))
