"""`kmx-tune convert` as a user runs it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.cli import kmx, kmx_json

IMG = np.arange(6 * 8 * 8 * 3, dtype=np.uint8).reshape(6, 8, 8, 3)


def test_help_has_an_example() -> None:
    r = kmx("convert", "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "kmx-tune convert" in r.output


def test_dry_run_lists_every_array(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    np.savez(p, x_train=IMG, y_train=np.arange(6), gray=IMG[..., 0])
    r = kmx("convert", str(p), "--dry-run")
    assert r.exit_code == 0
    assert "dry run: nothing written" in r.output
    assert "x_train  (6, 8, 8, 3)  uint8" in r.output and "transpose" in r.output
    assert "y_train" in r.output and "copy" in r.output
    assert "--add-channel-axis" in r.output  # the hint for the 3-D array
    assert not (tmp_path / "d.channels_first.npz").exists()


def test_convert_then_json_then_nothing_to_do(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, IMG)
    r = kmx("convert", str(p))
    assert r.exit_code == 0 and "✓" in r.output and "x.channels_first.npy" in r.output
    code, data = kmx_json("convert", str(p), "--force", "--verify")
    assert code == 0
    assert data["schema"] == "kmx-tune/convert/1"
    assert data["to"] == "channels_first" and data["dry_run"] is False
    (entry,) = data["files"]
    assert entry["status"] == "converted" and entry["verified"] == "full"
    assert entry["arrays"][0]["shape"] == [6, 8, 8, 3]
    assert entry["arrays"][0]["out_shape"] == [6, 3, 8, 8]
    assert entry["arrays"][0]["layout"] == "channels_last"
    assert entry["bytes_out"] == (tmp_path / "x.channels_first.npy").stat().st_size
    assert entry["seconds"] >= 0
    r = kmx("convert", str(tmp_path / "x.channels_first.npy"))
    assert r.exit_code == 0
    assert "nothing to convert" in r.output and "already channels_first" in r.output


def test_refusal_is_one_error_line_with_exit_1(tmp_path: Path) -> None:
    p = tmp_path / "amb.npz"
    np.savez(p, a=np.zeros((4, 3, 5, 3), np.uint8), b=np.zeros((4, 1, 5, 1), np.uint8))
    r = kmx("convert", str(p))
    assert r.exit_code == 1
    assert r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert "refused 2 array(s)" in r.stderr and "'a'" in r.stderr and "'b'" in r.stderr
    assert "--key" in r.stderr
    assert kmx("convert", str(p), "--key", "a", "--key", "b").exit_code == 0


def test_several_files_one_failing(tmp_path: Path) -> None:
    good = tmp_path / "good.npy"
    np.save(good, IMG)
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"nope")
    r = kmx("convert", str(good), str(bad), "-o", str(tmp_path / "out"))
    assert r.exit_code == 1
    assert "✓" in r.stdout and "✗" in r.stdout
    assert r.stderr == "Error: 1 of 2 files failed; see above\n"
    assert (tmp_path / "out" / "good.channels_first.npy").exists()


def test_json_exit_codes_come_from_the_report(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.npy", tmp_path / "bad.npy"
    np.save(good, IMG)
    bad.write_bytes(b"nope")
    np.savez(tmp_path / "d.npz", x=IMG)
    # one input: its own exit code (2 for a --key typo)
    code, data = kmx_json("convert", str(tmp_path / "d.npz"), "--key", "nope")
    assert code == 2 and [f["status"] for f in data["files"]] == ["failed"]
    # several inputs, one failing: 1, and the others still convert
    code, data = kmx_json("convert", str(good), str(bad), "-o", str(tmp_path / "out"))
    assert code == 1 and [f["status"] for f in data["files"]] == ["converted", "failed"]
    assert data["schema"] == "kmx-tune/convert/1"


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    np.save(p, IMG)
    r = kmx("convert", str(p), "--in-place", "-o", str(tmp_path / "o.npy"))
    assert r.exit_code == 2 and "--in-place and -o" in r.output
    r = kmx("convert", str(tmp_path / "missing.npy"))
    assert r.exit_code == 2 and "no such file" in r.output
    assert kmx("convert", str(tmp_path / "data.csv")).exit_code == 2
    code, data = kmx_json("convert", str(p), "--in-place", "-o", str(tmp_path / "o.npy"))
    assert code == 2 and data["schema"] == "kmx-tune/error/1"


def test_quiet_when_not_a_terminal(tmp_path: Path) -> None:
    """No progress bar when stderr is not a terminal, even where rich would draw one
    (TTY_COMPATIBLE=1 tells it the stream understands escape codes)."""
    p = tmp_path / "x.npy"
    np.save(p, np.zeros((400, 32, 32, 3), np.uint8))
    r = kmx("convert", str(p), env={"TTY_COMPATIBLE": "1"})
    assert r.exit_code == 0 and "✓" in r.stdout
    assert r.stderr == ""  # no bar, no cursor codes, not even the newline a bar ends with


def test_file_and_array_names_are_printed_as_data(tmp_path: Path) -> None:
    """A name is not rich markup, and its control characters reach the terminal escaped."""
    np.save(tmp_path / "[red]x.npy", IMG)
    np.savez(tmp_path / "e\x1b[2J.npz", **{"[bold]a\x07": IMG})
    r = kmx("convert", str(tmp_path / "[red]x.npy"), "--dry-run")
    assert r.exit_code == 0 and "[red]x.npy ->" in r.stdout
    r = kmx("convert", str(tmp_path / "e\x1b[2J.npz"), "--dry-run")
    assert r.exit_code == 0 and "\x1b" not in r.output and "\x07" not in r.output
    assert "e\\x1b[2J.npz" in r.stdout and "[bold]a\\x07" in r.stdout
    r = kmx("convert", str(tmp_path / "e\x1b[2J.npz"), str(tmp_path / "missing.npy"))
    assert r.exit_code == 1 and "\x1b" not in r.output and "✗" in r.stdout
