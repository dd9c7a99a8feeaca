"""``kmx-tune set-format`` and ``kmx-tune config``: edit and show keras.json.

Only click is imported at module level; the core (kmx_tune.keras_config) and rich are
imported inside the commands so ``kmx-tune --help`` stays fast."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kmx_tune.keras_config import EditResult, KerasJsonState

_FORMATS = ("channels_first", "channels_last")


def _show(value: Any) -> str:
    return json.dumps(value)


def _state_json(state: KerasJsonState) -> dict[str, Any]:
    from kmx_tune.keras_config import KERAS_DEFAULTS

    loc = state.location
    return {
        "path": str(loc.path),
        "source": loc.source,
        "tmp_fallback": loc.tmp_fallback,
        "exists": state.exists,
        "status": state.kind,
        "error": state.error,
        "backend_override": state.backend_override,
        "values": state.values,
        "effective": {k: {"value": v, "from": src} for k, (v, src) in state.effective.items()},
        "other_keys": [k for k in state.values if k not in KERAS_DEFAULTS],
        "notes": list(loc.notes),
    }


def _render_state(state: KerasJsonState) -> None:
    from rich.markup import escape

    from kmx_tune.keras_config import KERAS_DEFAULTS
    from kmx_tune.render import console

    out = console()
    loc = state.location
    out.print(f"keras.json in effect: [bold]{escape(str(loc.path))}[/bold]")
    out.print(f"  chosen by: {escape(loc.source)}")
    if loc.path.is_symlink():
        out.print(f"  symlink to: {escape(str(loc.path.resolve()))}")
    if not state.exists:
        status = "missing (Keras creates it with its defaults on first import)"
    elif state.error:
        status = f"[red]problem[/red]: {escape(state.error)}"
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
        out.print(escape(f"{key:<{w0}}  {value:<{w1}}  {source}"))
    for note in loc.notes:
        out.print(f"\nNote: {escape(note)}")


def _render_edit(result: EditResult) -> None:
    from rich.markup import escape

    from kmx_tune.render import console

    out = console()
    err = console(stderr=True)
    loc = result.location
    out.print(f"keras.json: {escape(str(loc.path))}  ({escape(loc.source)})")
    if not result.changed:
        settings = ", ".join(f"{k} {_show(v)}" for k, v in result.after.items() if k in _KEYS)
        out.print(f"Nothing to change ({settings}); nothing was written.")
    else:
        if result.created:
            out.print("  (new file, with Keras's defaults)")
        for change in result.changes:
            before = "(absent)" if change.added else _show(change.before)
            out.print(f"  {change.key}: {escape(before)} → {escape(_show(change.after))}")
        if result.dry_run:
            out.print("Dry run: nothing was written.")
        else:
            written = "Created" if result.created else "Wrote"
            out.print(f"{written} {escape(str(result.path))}")
            if result.backup is not None:
                out.print(f"Previous version kept in {escape(str(result.backup))}")
    for warning in result.warnings:
        err.print(f"Warning: {escape(warning)}")


_KEYS = ("image_data_format", "backend")


def _config(keras_home: str | None, as_json: bool) -> None:
    from kmx_tune import keras_config
    from kmx_tune.render import emit_json

    state = keras_config.read(keras_config.locate(keras_home))
    if as_json:
        emit_json(_state_json(state))
    else:
        _render_state(state)
    if state.error:
        raise click.exceptions.Exit(1)


_keras_home_option = click.option(
    "--keras-home",
    metavar="DIR",
    help="Use DIR/keras.json instead of what Keras would find ($KERAS_HOME, else ~/.keras).",
)


@click.command("set-format")
@click.argument("image_data_format", metavar="FORMAT", required=False, type=click.Choice(_FORMATS))
@click.option(
    "--backend",
    type=click.Choice(["mxnet", "keep"]),
    default="mxnet",
    show_default=True,
    help="Set the backend to mxnet too, or keep the file's backend.",
)
@_keras_home_option
@click.option("--dry-run", is_flag=True, help="Show the change without writing it.")
@click.option(
    "--force",
    is_flag=True,
    help="Replace content Keras cannot read (malformed JSON, bad values), after a backup.",
)
@click.option("--show", is_flag=True, help="Show the keras.json in effect (same as `config`).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
    keras.json.bak. A missing file is created with Keras's defaults.

    \b
    Example:
      kmx-tune set-format channels_first            # and backend mxnet
      kmx-tune set-format channels_first --backend keep --dry-run
      kmx-tune set-format channels_last             # revert
      kmx-tune set-format --show                    # same as `kmx-tune config`
    """
    from kmx_tune import keras_config
    from kmx_tune.errors import KmxError, UsageError
    from kmx_tune.render import emit_json

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
        if as_json:  # scripts get data on stdout too; the Error line still goes to stderr
            emit_json({"path": str(location.path), "changed": False, "error": str(exc)})
        raise
    if as_json:
        emit_json(result.to_json())
    else:
        _render_edit(result)


@click.command("config")
@_keras_home_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
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
