"""`kmx-tune convert` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from kmx_tune.cli import cli

IMG = np.arange(6 * 8 * 8 * 3, dtype=np.uint8).reshape(6, 8, 8, 3)


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, ["convert", *args])
    return r.exit_code, r.output


def test_help_has_an_example() -> None:
    code, out = run("--help")
    assert code == 0 and "Example:" in out and "kmx-tune convert" in out


def test_dry_run_lists_every_array(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x_train=IMG, y_train=np.arange(6), gray=IMG[..., 0])
    code, out = run(str(p), "--dry-run")
    assert code == 0
    assert "dry run: nothing written" in out
    assert "x_train  (6, 8, 8, 3)  uint8" in out and "transpose" in out
    assert "y_train" in out and "copy" in out
    assert "--add-channel-axis" in out  # the hint for the 3-D array
    assert not (tmp_path / "d.channels_first.npz").exists()


def test_convert_then_json_then_nothing_to_do(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, IMG)
    code, out = run(str(p))
    assert code == 0 and "✓" in out and "x.channels_first.npy" in out
    code, out = run(str(p), "--json", "--force", "--verify")
    data = json.loads(out)
    (entry,) = data["files"]
    assert entry["status"] == "converted" and entry["verified"] == "full"
    assert entry["arrays"][0]["shape"] == [6, 8, 8, 3]
    assert entry["arrays"][0]["out_shape"] == [6, 3, 8, 8]
    assert entry["arrays"][0]["layout"] == "channels_last"
    assert entry["bytes_out"] == (tmp_path / "x.channels_first.npy").stat().st_size
    assert entry["seconds"] >= 0
    code, out = run(str(tmp_path / "x.channels_first.npy"))
    assert code == 0 and "nothing to convert" in out and "already channels_first" in out


def test_refusal_is_one_error_line_with_exit_1(tmp_path: Path) -> None:
    p = tmp_path / "amb.npz"
    np.savez(p, a=np.zeros((4, 3, 5, 3), np.uint8), b=np.zeros((4, 1, 5, 1), np.uint8))
    code, out = run(str(p))
    assert code == 1
    assert out.startswith("Error: ") and out.count("\n") == 1
    assert "refused 2 array(s)" in out and "'a'" in out and "'b'" in out and "--key" in out
    code, _ = run(str(p), "--key", "a", "--key", "b")
    assert code == 0


def test_several_files_one_failing(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, IMG)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"nope")
    code, out = run(str(good), str(bad), "-o", str(tmp_path / "out"))
    assert code == 1
    assert "✓" in out and "✗" in out and "1 of 2 files failed" in out
    assert (tmp_path / "out" / "good.channels_first.npy").exists()


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, IMG)
    code, out = run(str(p), "--in-place", "-o", str(tmp_path / "o.npy"))
    assert code == 2 and "--in-place and -o" in out
    code, out = run(str(tmp_path / "missing.npy"))
    assert code == 2 and "no such file" in out
    code, out = run(str(tmp_path / "data.csv"))
    assert code == 2


def test_quiet_when_not_a_terminal(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, IMG)
    r = CliRunner().invoke(cli, ["convert", str(p), "--json"])
    json.loads(r.stdout)  # nothing but JSON on stdout: no progress bar
