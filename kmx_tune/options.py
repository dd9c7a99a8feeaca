"""The click options that several commands share, each declared once with one help
text: ``--python``, ``--hardware``, ``--json`` and ``--dry-run``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from kmx_tune.target import Target

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
        "on PATH. Default: the active virtual environment ($VIRTUAL_ENV), else the active "
        "conda environment ($CONDA_PREFIX), else `python` on PATH; kmx-tune's own "
        "environment only when it has Keras or MXNet.",
    )(f)


def find_target(python: str | None) -> Target:
    """The target of a command taking --python (:meth:`Target.find`). A default one is
    named on stderr with why it was chosen, before the command's own output."""
    from kmx_tune.render import console, plain
    from kmx_tune.target import MissingTarget
    from kmx_tune.target import Target as _Target

    target = _Target.find(python)
    if target.is_default and not isinstance(target, MissingTarget):
        console(stderr=True).print(
            f"[dim]Python environment: {plain(target.python)} ({plain(target.chosen_by)}; "
            "--python names another)[/dim]"
        )
    return target


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
