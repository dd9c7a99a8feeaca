"""The one way tests run the command line: in-process through click's test runner,
with stdout and stderr kept apart. A traceback fails the test: every error a user can
cause must end as an ``Error:`` line and an exit status, never as an exception."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from click.testing import CliRunner, Result

from kmx_tune.cli import cli


def kmx(
    *args: str, env: Mapping[str, str | None] | None = None, input: str | None = None
) -> Result:
    """Run ``kmx-tune ARGS...``; the result has exit_code, stdout, stderr and output."""
    result = CliRunner().invoke(cli, list(args), env=env, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(
            f"kmx-tune {' '.join(args)} raised instead of printing an error"
        ) from result.exception
    return result


def kmx_json(*args: str, env: Mapping[str, str | None] | None = None) -> tuple[int, Any]:
    """Run ``kmx-tune ARGS... --json``: the exit status and the parsed stdout."""
    result = kmx(*args, "--json", env=env)
    return result.exit_code, json.loads(result.stdout)
