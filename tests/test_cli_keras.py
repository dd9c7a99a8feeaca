"""`kmx-tune set-format` and `kmx-tune config` as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import kmx
from tests.conftest import KERAS_JSON
from tests.fs_helpers import unwritable_dir

MXNET_FIRST = KERAS_JSON / "keras-mxnet-2.2.4.3-first-import.json"
KERAS3_FIRST = KERAS_JSON / "keras-3.15.1-first-import.json"


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = kmx(*args, env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def home_json() -> Path:
    path = Path(os.environ["HOME"]) / ".keras" / "keras.json"
    path.parent.mkdir()
    shutil.copy(MXNET_FIRST, path)
    return path


@pytest.mark.parametrize("name", ["set-format", "config"])
def test_help_has_example(name: str) -> None:
    code, out, _ = _run(name, "--help")
    assert code == 0 and "Example:" in out and "kmx-tune" in out


def test_set_format_text(home_json: Path) -> None:
    code, out, err = _run("set-format", "channels_first")
    assert code == 0, err
    assert f"keras.json: {home_json}  (~/.keras (default))" in out
    assert 'image_data_format: "channels_last" → "channels_first"' in out
    assert f"Previous version kept in {home_json}.bak" in out
    assert json.loads(home_json.read_text())["image_data_format"] == "channels_first"


def test_set_format_unchanged_says_so(home_json: Path) -> None:
    code, out, _ = _run("set-format", "channels_last")
    assert code == 0 and "Nothing to change" in out and "nothing was written" in out
    assert not home_json.with_name("keras.json.bak").exists()


def test_set_format_json_fields(home_json: Path) -> None:
    code, out, _ = _run("set-format", "channels_first", "--json")
    data = json.loads(out)
    assert code == 0
    assert {"path", "changed", "before", "after", "backup", "dry_run", "warnings"} <= set(data)
    assert data["path"] == str(home_json) and data["changed"] and not data["dry_run"]
    assert data["before"]["image_data_format"] == "channels_last"
    assert data["after"]["image_data_format"] == "channels_first"
    assert data["backup"] == str(home_json) + ".bak"


def test_set_format_json_failure_is_data_too(home_json: Path) -> None:
    home_json.write_text('{"backend": "mxnet",, }')
    before = home_json.read_bytes()
    code, out, err = _run("set-format", "channels_first", "--json")
    assert code == 2
    data = json.loads(out)
    assert data["schema"] == "kmx-tune/error/1" and data["exit_code"] == 2
    assert data["details"] == {"path": str(home_json)}
    assert "not valid JSON" in data["error"]
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert home_json.read_bytes() == before


def test_dry_run_shows_but_does_not_write(home_json: Path) -> None:
    code, out, _ = _run("set-format", "channels_first", "--dry-run")
    assert code == 0 and '"channels_last" → "channels_first"' in out and "Dry run" in out
    assert home_json.read_bytes() == MXNET_FIRST.read_bytes()


def test_backend_keep_and_env_override_warning(tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    kh.mkdir()
    shutil.copy(KERAS3_FIRST, kh / "keras.json")
    env = {"KERAS_HOME": str(kh), "KERAS_BACKEND": "tensorflow"}
    code, out, err = _run("set-format", "channels_first", "--backend", "keep", env=env)
    assert code == 0 and "  backend:" not in out
    assert json.loads((kh / "keras.json").read_text())["backend"] == "tensorflow"
    code, out, err = _run("set-format", "channels_first", env=env)
    assert 'backend: "tensorflow" → "mxnet"' in out
    assert "Warning: KERAS_BACKEND=tensorflow in the environment overrides" in err


def test_keras_home_flag_warns_when_keras_will_not_read_it(tmp_path: Path) -> None:
    code, out, err = _run("set-format", "channels_first", "--keras-home", str(tmp_path / "kh"))
    assert code == 0 and (tmp_path / "kh" / "keras.json").exists()
    assert "Keras reads this file only when KERAS_HOME=" in err


def test_malformed_file_exit_2_one_line_no_traceback(home_json: Path) -> None:
    home_json.write_text('{"backend": "mxnet",}')
    code, out, err = _run("set-format", "channels_first")
    assert code == 2 and out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1
    assert "line 1 column 21" in err and "--force" in err
    assert home_json.read_text() == '{"backend": "mxnet",}'


def test_unwritable_folder_exit_1(home_json: Path) -> None:
    with unwritable_dir(home_json.parent):
        code, _, err = _run("set-format", "channels_first")
    assert code == 1 and err.startswith("Error: cannot write in") and err.count("\n") == 1
    assert home_json.read_bytes() == MXNET_FIRST.read_bytes()


def test_missing_format_is_usage_error() -> None:
    code, _, err = _run("set-format")
    assert code == 2 and "channels_first" in err


def test_bad_format_is_rejected_by_click() -> None:
    code, _, err = _run("set-format", "NCHW")
    assert code == 2 and "channels_first" in err


def test_config_text(home_json: Path) -> None:
    home_json.write_text('{\n    "image_data_format": "channels_first",\n    "mine": 1\n}')
    code, out, _ = _run("config", env={"KERAS_BACKEND": "mxnet"})
    assert code == 0
    assert f"keras.json in effect: {home_json}" in out and "chosen by: ~/.keras (default)" in out
    lines = {line.split()[0]: line for line in out.splitlines()[4:] if line.strip()}
    assert (
        '"channels_first"' in lines["image_data_format"]
        and "keras.json" in lines["image_data_format"]
    )
    assert "Keras default (not in keras.json)" in lines["floatx"]
    assert "$KERAS_BACKEND" in lines["backend"]
    assert "not a Keras setting" in lines["mine"]


def test_show_is_config(home_json: Path) -> None:
    assert _run("set-format", "--show") == _run("config")
    assert _run("set-format", "--show", "--json") == _run("config", "--json")


def test_config_json(tmp_path: Path) -> None:
    code, out, _ = _run("config", "--json", env={"KERAS_HOME": str(tmp_path)})
    data = json.loads(out)
    assert code == 0 and data["path"] == str(tmp_path / "keras.json") and not data["exists"]
    assert data["source"] == f"$KERAS_HOME={tmp_path}"
    assert data["effective"]["backend"] == {
        "value": "mxnet",
        "from": "Keras default (not in keras.json)",
    }


def test_config_exit_1_on_file_keras_cannot_read(home_json: Path) -> None:
    home_json.write_text("[]")
    code, out, _ = _run("config")
    assert code == 1 and "not an object" in out


def test_config_explains_tmp_fallback(tmp_path: Path) -> None:
    home = tmp_path / "rohome"
    home.mkdir()
    with unwritable_dir(home):
        code, out, _ = _run("config", "--json", env={"HOME": str(home)})
    data = json.loads(out)
    assert data["path"] == "/tmp/.keras/keras.json" and data["tmp_fallback"]
    assert data["source"] == f"/tmp/.keras (home folder {home} not writable)"
    assert "falls back to /tmp/.keras" in data["notes"][0]


def test_two_cli_runs_in_parallel_both_land(tmp_path: Path) -> None:
    """Two real `kmx-tune` processes at once: one flips the format, one the backend;
    both changes are in the file afterwards and it is valid."""
    kh = tmp_path / "kh"
    kh.mkdir()
    shutil.copy(KERAS3_FIRST, kh / "keras.json")
    env = dict(os.environ, KERAS_HOME=str(kh))
    exe = [sys.executable, "-m", "kmx_tune"]
    a = subprocess.Popen([*exe, "set-format", "channels_first", "--backend", "keep"], env=env)
    b = subprocess.Popen([*exe, "set-format", "channels_last"], env=env)  # backend -> mxnet
    assert a.wait(timeout=60) == 0 and b.wait(timeout=60) == 0
    values = json.loads((kh / "keras.json").read_text())
    assert values["backend"] == "mxnet"
    # the format is whichever ran last; both runs' backups hold a complete file
    assert values["image_data_format"] in ("channels_first", "channels_last")
    json.loads((kh / "keras.json.bak").read_text())
