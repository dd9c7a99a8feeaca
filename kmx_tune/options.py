"""The click options that several commands share, each declared once with one help
text: ``--python``, ``--hardware``, ``--json`` and ``--dry-run``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

JSON_META = "kmx_tune.json"  # ctx.meta key: the error edge prints errors as JSON too


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[JSON_META] = True
    return value


def json_wanted(ctx: click.Context | None) -> bool:
    """Whether the running command was given ``--json``."""
    return bool(ctx is not None and ctx.meta.get(JSON_META))


def python_option(f: F) -> F:
    return click.option(
        "--python",
        "python",
        metavar="PATH",
        help="The Python environment to work on: an interpreter, a venv folder, or a name "
        "on PATH. Default: the one running kmx-tune.",
    )(f)


def hardware_option(f: F) -> F:
    return click.option(
        "--hardware",
        "hardware_file",
        metavar="FILE",
        # a str, not click.Path(exists=...): load_profile refuses a bad file in its own words
        type=click.Path(),
        help="Use a profile saved by `kmx-tune probe --json` instead of probing this machine.",
    )(f)


def json_option(f: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,  # known before any other option can fail, so that error is JSON too
        callback=_remember_json,
        help="Print the result as JSON on stdout (an error too).",
    )(f)


def dry_run_option(f: F) -> F:
    return click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")(
        f
    )
