"""The command group as a user meets it: --version, --help, every command documented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune import __version__
from kmx_tune.cli import COMMANDS
from tests.cli import kmx
from tests.conftest import HARDWARE


def test_version() -> None:
    result = kmx("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = kmx("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_an_example(name: str) -> None:
    result = kmx(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"kmx-tune {name}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = kmx("no-such-command")
    assert result.exit_code == 2


def test_python_dash_m_and_help_import_no_numpy() -> None:
    code = (
        "import sys, runpy; sys.argv = ['kmx-tune', '--help']\n"
        "try:\n    runpy.run_module('kmx_tune', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('numpy', 'mxnet', 'cpuinfo', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "Usage: kmx-tune" in out
    assert "HEAVY []" in out


def _console_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args], capture_output=True, text=True, check=False
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["convert"], "Error: Missing argument 'PATH...'. (see 'kmx-tune convert --help')"),
        (["doctor", "--bogus"], "Error: No such option '--bogus'. (see 'kmx-tune doctor --help')"),
        (["no-such-command"], "Error: No such command 'no-such-command'. (see 'kmx-tune --help')"),
        (["profile", "--top", "-3", "x.py"], "Error: Invalid value for '--top'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], message: str) -> None:
    proc = _console_script(*args)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def test_no_command_prints_the_help() -> None:
    proc = _console_script()
    assert proc.returncode == 0
    assert proc.stdout.startswith("Usage: kmx-tune") and "install-mxnet" in proc.stdout


# ------------------------------------------------------------ one result protocol

_BAD_PYTHON = "/nonexistent/kmx-tune-test/python"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["doctor", "--python", _BAD_PYTHON], 2),
        (["install-mxnet", "--dry-run", "--python", _BAD_PYTHON], 2),
        (["bench", "--python", _BAD_PYTHON], 2),
        # profile's own options go before the script; what follows it is the script's
        (["profile", "--json", "--python", _BAD_PYTHON, "/nonexistent/script.py"], 2),
        (["probe", "--hardware", "/nonexistent/profile.json"], 2),
        (["set-format"], 2),
    ],
)
def test_with_json_every_error_is_json_on_stdout_too(args: list[str], code: int) -> None:
    result = kmx(*args) if "--json" in args else kmx(*args, "--json")
    assert result.exit_code == code
    data = json.loads(result.stdout)
    assert data["schema"] == "kmx-tune/error/1" and data["exit_code"] == code
    assert result.stderr == f"Error: {data['error']}\n"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["convert", "--json"], 2),  # a missing argument: click's own usage error
        (["doctor", "--bogus", "--json"], 2),
    ],
)
def test_usage_errors_are_json_too_under_json(args: list[str], code: int) -> None:
    proc = _console_script(*args)
    assert proc.returncode == code
    data = json.loads(proc.stdout)
    assert data["schema"] == "kmx-tune/error/1" and data["exit_code"] == code
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "schema"),
    [
        (["probe", "--hardware", str(HARDWARE / "epyc-no-gpu" / "kmx-profile.json")], "hardware"),
        (["config"], "keras-config"),
        (["set-format", "channels_first", "--dry-run"], "set-format"),
    ],
)
def test_every_result_names_its_schema(args: list[str], schema: str) -> None:
    result = kmx(*args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema"] == f"kmx-tune/{schema}/1"


def test_control_characters_in_an_error_reach_the_terminal_escaped(tmp_path: Path) -> None:
    hostile = tmp_path / "x\x1b]0;PWNED\x07.json"  # an OSC set-title sequence in a file name
    result = kmx("probe", "--hardware", str(hostile))
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "x\\x1b]0;PWNED\\x07.json" in result.stderr
