"""``kmx-tune set-format`` and ``kmx-tune config``: edit and show keras.json.

Only click is imported at module level; the core (kmx_tune.keras_config) and rich are
imported inside the commands so ``kmx-tune --help`` stays fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kmx_tune.formats import FORMATS
from kmx_tune.options import dry_run_option, json_option

if TYPE_CHECKING:
    from kmx_tune.keras_config import EditResult, KerasJsonState


def _show(value: Any) -> str:
    return json.dumps(value)


def _render_state(state: KerasJsonState) -> None:
    from kmx_tune.keras_config import KERAS_DEFAULTS
    from kmx_tune.render import console, plain

    out = console()
    loc = state.location
    out.print(f"keras.json in effect: [bold]{plain(str(loc.path))}[/bold]")
    out.print(f"  chosen by: {plain(loc.source)}")
    if loc.path.is_symlink():
        out.print(f"  symlink to: {plain(_link_target(loc.path))}")
    if not state.exists:
        status = "missing (Keras creates it with its defaults on first import)"
    elif state.error:
        status = f"[red]problem[/red]: {plain(state.error)}"
    else:
        status = "ok"
    out.print(f"  status: {status}")
    rows = [(key, _show(value), source) for key, (value, source) in state.effective.items()]
    rows += [
        (key, _show(value), "keras.json (not a Keras setting)")
        for key, value in state.values.items()
        if key not in KERAS_DEFAULTS
    ]
    rows.insert(0, ("setting", "value", "from"))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    out.print()
    for key, value, source in rows:
        out.print(plain(f"{key:<{w0}}  {value:<{w1}}  {source}"))
    for note in loc.notes:
        out.print(f"\nNote: {plain(note)}")


def _link_target(path: Path) -> str:
    """Where the symlink *path* leads; a loop or a dead end is said, never raised."""
    try:
        return str(path.resolve(strict=True))
    except (OSError, RuntimeError) as exc:
        why = getattr(exc, "strerror", None) or "a symlink loop"
        try:
            return f"{os.readlink(path)} (cannot be followed: {why})"
        except OSError:
            return f"(cannot be followed: {why})"


def _render_edit(result: EditResult) -> None:
    from kmx_tune.render import console, plain

    out = console()
    err = console(stderr=True)
    loc = result.location
    out.print(f"keras.json: {plain(str(loc.path))}  ({plain(loc.source)})")
    if not result.changed:
        settings = ", ".join(f"{k} {_show(v)}" for k, v in result.after.items() if k in _KEYS)
        out.print(f"Nothing to change ({plain(settings)}); nothing was written.")
    else:
        if result.created:
            out.print("  (new file, with Keras's defaults)")
        for change in result.changes:
            before = "(absent)" if change.added else _show(change.before)
            out.print(f"  {change.key}: {plain(before)} → {plain(_show(change.after))}")
        if result.dry_run:
            out.print("Dry run: nothing was written.")
        else:
            written = "Created" if result.created else "Wrote"
            out.print(f"{written} {plain(str(result.path))}")
            if result.backup is not None:
                out.print(f"Previous version kept in {plain(str(result.backup))}")
    for warning in result.warnings:
        err.print(f"Warning: {plain(warning)}")


_KEYS = ("image_data_format", "backend")


def _config(keras_home: str | None, as_json: bool) -> None:
    from kmx_tune import keras_config
    from kmx_tune.render import finish

    finish(keras_config.read(keras_config.locate(keras_home)), as_json, _render_state)


_keras_home_option = click.option(
    "--keras-home",
    metavar="DIR",
    help="Use DIR/keras.json instead of what Keras would find ($KERAS_HOME, else ~/.keras).",
)


@click.command("set-format")
@click.argument("image_data_format", metavar="FORMAT", required=False, type=click.Choice(FORMATS))
@click.option(
    "--backend",
    type=click.Choice(["mxnet", "keep"]),
    default="mxnet",
    show_default=True,
    help="Set the backend to mxnet too, or keep the file's backend.",
)
@_keras_home_option
@dry_run_option
@click.option(
    "--force",
    is_flag=True,
    help="Replace content Keras cannot read (malformed JSON, bad values), keeping the keys "
    "that can be read; the old file goes to a numbered keras.json.bak.N.",
)
@click.option("--show", is_flag=True, help="Show the keras.json in effect (same as `config`).")
@json_option
def set_format(
    image_data_format: str | None,
    backend: str,
    keras_home: str | None,
    dry_run: bool,
    force: bool,
    show: bool,
    as_json: bool,
) -> None:
    """Set image_data_format (and backend) in the keras.json Keras reads, safely.

    Finds keras.json like Keras-MXNet does ($KERAS_HOME/keras.json, else
    ~/.keras/keras.json, else /tmp/.keras/keras.json when the home folder is not
    writable), changes only image_data_format and backend, keeps every other key,
    and replaces the file atomically under a lock, with the old one kept as
    keras.json.bak (keras.json.bak.N, never overwritten, when --force replaces
    content Keras cannot read). A missing file is created with Keras's defaults.

    \b
    Example:
      kmx-tune set-format channels_first            # and backend mxnet
      kmx-tune set-format channels_first --backend keep --dry-run
      kmx-tune set-format channels_last             # revert
      kmx-tune set-format --show                    # same as `kmx-tune config`
    """
    from kmx_tune import keras_config
    from kmx_tune.errors import KmxError, UsageError
    from kmx_tune.render import finish

    if show:
        _config(keras_home, as_json)
        return
    if image_data_format is None:
        raise UsageError(
            "say which format: kmx-tune set-format channels_first (or channels_last, or --show)"
        )
    location = keras_config.locate(keras_home)
    try:
        result = keras_config.set_format(
            image_data_format,
            None if backend == "keep" else backend,
            location=location,
            dry_run=dry_run,
            force=force,
        )
    except KmxError as exc:
        exc.details.setdefault("path", str(location.path))  # scripts learn which file
        raise
    finish(result, as_json, _render_edit)


@click.command("config")
@_keras_home_option
@json_option
def config(keras_home: str | None, as_json: bool) -> None:
    """Show the keras.json Keras will read, its path, and where each value comes from.

    A value comes from keras.json, from Keras's default when the file lacks it
    (or is not valid JSON), or from $KERAS_BACKEND, which beats the file's
    backend. Exits 1 when the file is one Keras cannot use.

    \b
    Example:
      kmx-tune config
      KERAS_HOME=/data/keras kmx-tune config --json
    """
    _config(keras_home, as_json)
