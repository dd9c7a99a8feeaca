"""The command group as a user meets it: --version, --help, every command documented."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from kmx_tune import __version__
from kmx_tune.cli import COMMANDS, cli


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_has_an_example(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"kmx-tune {name}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
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
