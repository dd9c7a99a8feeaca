"""`kmx-tune migrate` from the command line: report, --diff, --write, --json, exit codes."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from kmx_tune.migrate import migrate_paths
from tests.cli import kmx, kmx_json

DATA = Path(__file__).parent / "data" / "migrate"

MODEL = """\
from keras.layers import Conv2D, BatchNormalization, concatenate

model.add(Conv2D(32, (3, 3), input_shape=(28, 28, 1)))  # MNIST
model.add(BatchNormalization(axis=-1))
"""
MODEL_FIRST = """\
from keras.layers import Conv2D, BatchNormalization, concatenate

model.add(Conv2D(32, (3, 3), input_shape=(1, 28, 28)))  # MNIST
model.add(BatchNormalization(axis=1))
"""
UNFIXABLE = "m = concatenate([u, v], axis=-1)\n"


def run(*args: str) -> tuple[int, str, str]:
    result = kmx("migrate", *args)
    return result.exit_code, result.stdout, result.stderr


def keras_json_says(fmt: str) -> None:
    """The keras.json in effect, as `kmx-tune set-format FMT` leaves it."""
    path = Path(os.environ["KERAS_HOME"]) / "keras.json"
    path.write_text(json.dumps({"backend": "mxnet", "image_data_format": fmt}, indent=4))


@pytest.fixture(autouse=True)
def _keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras and the code agree on channels_first here (migrate checks the keras.json in
    effect; its findings, KMX601, have their own tests in test_migrate_data.py)."""
    home = tmp_path / "keras-home"
    home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(home))
    keras_json_says("channels_first")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "model.py").write_text(MODEL)
    (root / "clean.py").write_text("x = 1\n")
    (root / ".venv").mkdir()
    (root / ".venv" / "ignored.py").write_text(MODEL)
    return root


def test_diff_of_a_relative_path_uses_git_prefixes(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    code, out, _ = run("--diff", "pkg")
    assert code == 1
    assert out.startswith("--- a/pkg/model.py\n+++ b/pkg/model.py\n")


def test_report_lists_findings_and_exits_1(project: Path) -> None:
    code, out, err = run(str(project))
    assert code == 1
    model = project / "pkg" / "model.py"
    assert out.splitlines() == [
        f"{model}:3:42: KMX101 input_shape=(28, 28, 1) is channels_last -> (1, 28, 28)",
        f"{model}:4:35: KMX201 BatchNormalization axis=-1 is the channels_last channel axis"
        " -> axis=1",
    ]
    assert "Found 2 finding(s) in 2 file(s)" in err
    assert model.read_text() == MODEL  # report mode writes nothing


def test_clean_code_exits_0(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL_FIRST)
    code, out, err = run(str(tmp_path / "m.py"))
    assert (code, out) == (0, "")
    assert "No findings" in err


def test_diff_prints_a_unified_diff_and_writes_nothing(project: Path) -> None:
    code, out, _ = run("--diff", str(project))
    assert code == 1
    model = project / "pkg" / "model.py"
    assert f"--- {model}\n+++ {model}\n@@ -1,4 +1,4 @@\n" in out
    assert "\n-model.add(BatchNormalization(axis=-1))\n+model.add(Conv2D(" in out
    assert out.endswith("\n+model.add(BatchNormalization(axis=1))\n")
    assert (project / "pkg" / "model.py").read_text() == MODEL


def test_write_applies_in_place_and_keeps_mode(project: Path) -> None:
    model = project / "pkg" / "model.py"
    model.chmod(0o640)
    code, out, err = run("--write", str(project))
    assert (code, out) == (0, "")
    assert "Fixed 2 finding(s) in 1 file(s)" in err
    assert model.read_text() == MODEL_FIRST
    assert stat.S_IMODE(model.stat().st_mode) == 0o640
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.py"]  # no temp files left
    # and back, with keras.json
    keras_json_says("channels_last")
    code, _, _ = run("--write", "--to", "channels_last", str(project))
    assert code == 0
    assert model.read_text() == MODEL


def test_write_exits_1_when_findings_are_left_to_fix_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(MODEL + UNFIXABLE)
    code, out, err = run("--write", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}:5:30: KMX202 concatenate axis=-1 is the channels_last channel axis"
        " [not rewritten: cannot tell the tensors are images]"
    ]
    assert "1 left to fix by hand" in err
    assert path.read_text() == MODEL_FIRST + UNFIXABLE


def test_the_core_writes_and_computes_the_exit_status(tmp_path: Path) -> None:
    fixable, mixed = tmp_path / "fixable.py", tmp_path / "mixed.py"
    fixable.write_text(MODEL)
    mixed.write_text(MODEL + UNFIXABLE)
    report = migrate_paths([tmp_path])
    assert (report.exit_code, report.files_written, report.fixed_count) == (1, 0, 0)
    assert fixable.read_text() == MODEL
    assert migrate_paths([fixable], write=True).exit_code == 0  # all fixed
    result = migrate_paths([tmp_path], write=True)
    assert (result.exit_code, result.files_written, result.fixed_count) == (1, 1, 2)
    assert [fr.written for fr in result.files] == [False, True]  # fixable.py: already done
    assert mixed.read_text() == MODEL_FIRST + UNFIXABLE


def test_unparseable_file_is_reported_skipped_and_never_rewritten(project: Path) -> None:
    bad = project / "bad.py"
    bad.write_text("print 'python 2'\ninput_shape=(28, 28, 1)\n")
    before = bad.read_bytes()
    code, out, _ = run("--write", str(project))
    assert code == 1
    assert f"{bad}:1:1: E999 could not parse: Missing parentheses in call to 'print'" in out
    assert bad.read_bytes() == before
    assert (project / "pkg" / "model.py").read_text() == MODEL_FIRST  # the others still fixed


def test_a_failed_write_is_an_error_and_leaves_the_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.py"
    path.write_text(MODEL)

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    # the OS seam: a read-only folder cannot be simulated as root
    monkeypatch.setattr(os, "replace", refuse)
    code, _, err = run("--write", str(path))
    assert code == 1
    assert f"Error: could not write {path}: Permission denied." in err
    assert path.read_text() == MODEL
    assert not [p for p in tmp_path.iterdir() if "kmx-tmp" in p.name]  # the temporary file is gone


def test_control_characters_in_a_file_name_reach_the_terminal_escaped(tmp_path: Path) -> None:
    path = tmp_path / "m\x1b]0;owned\x07.py"
    path.write_text(MODEL)
    code, out, _ = run(str(path))
    assert code == 1
    assert "\x1b" not in out and "\x07" not in out
    assert out.startswith(f"{tmp_path}/m\\x1b]0;owned\\x07.py:3:42: KMX101 ")


def test_json_lists_findings(project: Path) -> None:
    code, data = kmx_json("migrate", str(project / "pkg"))
    assert code == 1
    assert {k: v for k, v in data.items() if k != "findings"} == {
        "schema": "kmx-tune/migrate/1",
        "to": "channels_first",
        "write": False,
        "files_checked": 1,
        "files_written": 0,
        "not_written": [],
        "skipped": [],
    }
    assert data["findings"][0] == {
        "file": str(project / "pkg" / "model.py"),
        "line": 3,
        "col": 42,
        "code": "KMX101",
        "message": "input_shape=(28, 28, 1) is channels_last -> (1, 28, 28)",
        "replacement": "(1, 28, 28)",
        "fixable": True,
        "fixed": False,
    }
    assert [d["code"] for d in data["findings"]] == ["KMX101", "KMX201"]


def test_json_of_clean_code_exits_0(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(MODEL_FIRST)
    code, data = kmx_json("migrate", "--write", str(tmp_path))
    assert code == 0
    assert (data["write"], data["files_checked"], data["files_written"]) == (True, 1, 0)
    assert data["findings"] == []


def test_json_with_write_marks_what_was_fixed(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(MODEL + UNFIXABLE)
    code, data = kmx_json("migrate", "--write", str(path))
    assert code == 1
    assert (data["write"], data["files_checked"], data["files_written"]) == (True, 1, 1)
    assert [(d["code"], d["fixed"]) for d in data["findings"]] == [
        ("KMX101", True),
        ("KMX201", True),
        ("KMX202", False),
    ]


def test_json_usage_error_is_json_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, data = kmx_json("migrate", "--diff", ".")
    assert code == 2
    assert data["schema"] == "kmx-tune/error/1"
    assert "--json and --diff cannot be combined" in data["error"]


@pytest.mark.parametrize(
    "args",
    [["does-not-exist.py"], [], ["--json", "--diff", "."], ["--to", "channels_middle", "."]],
)
def test_usage_errors_exit_2(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(*args)
    assert code == 2
    assert "Error" in err


def test_round_trip_on_the_real_examples_through_the_cli(tmp_path: Path) -> None:
    work = tmp_path / "examples"
    shutil.copytree(DATA, work, ignore=shutil.ignore_patterns("mnist_swwae.py", "*.md"))
    before = {p: p.read_bytes() for p in work.rglob("*.py")}
    code, _, _ = run("--write", str(work))
    assert code == 1  # the hierarchical RNN and conv_lstm data need a human
    changed = {p for p in before if p.read_bytes() != before[p]}
    assert {p.name for p in changed} == {
        "mnist_acgan.py",
        "variational_autoencoder_deconv.py",
        "cifar10_mobilenet.py",
        "conv_lstm.py",
    }
    for path in changed:
        compile(path.read_bytes(), str(path), "exec")
    run("--write", "--to", "channels_last", str(work))
    assert {p: p.read_bytes() for p in before} == before


def test_help_has_an_example() -> None:
    result = kmx("migrate", "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "kmx-tune migrate --write" in result.output
