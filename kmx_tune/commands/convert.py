"""``kmx-tune convert``: transpose .npy/.npz image datasets on disk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kmx_tune.convert.common import FileOutcome


@click.command("convert")
@click.argument(
    "paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--to",
    type=click.Choice(["channels_first", "channels_last"]),
    default="channels_first",
    show_default=True,
    help="Target layout.",
)
@click.option(
    "-o",
    "--output",
    # a str, not a Path: "out/" must keep its slash, which says "a folder" for one input
    type=click.Path(),
    help="Output file, or folder for several inputs.",
)
@click.option("--in-place", is_flag=True, help="Replace each input, after a full verified write.")
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="NAME",
    help="Convert only these arrays (repeatable); allows ambiguous shapes.",
)
@click.option("--add-channel-axis", is_flag=True, help="Give 3-D (N, H, W) batches a channel axis.")
@click.option(
    "--dry-run", is_flag=True, help="List every array and what would happen; write nothing."
)
@click.option(
    "--verify", is_flag=True, help="Re-read the whole output and compare it with the source."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def convert(
    paths: tuple[Path, ...],
    to: str,
    output: str | None,
    in_place: bool,
    keys: tuple[str, ...],
    add_channel_axis: bool,
    dry_run: bool,
    verify: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Transpose the image arrays in .npy/.npz files between channels_last
    (N, H, W, C) and channels_first (N, C, H, W), on disk, in bounded memory.

    Detects each array's layout and never transposes twice; copies labels
    unchanged; refuses ambiguous shapes unless --key names them. Writes
    NAME.channels_first.npy (or .npz) beside the input under a temporary name
    and renames it only once it is complete, synced and checked.

    \b
    Example:
      kmx-tune convert data.npz --dry-run
      kmx-tune convert mnist.npz --add-channel-axis
      kmx-tune convert x_train.npy x_test.npy -o converted/
      kmx-tune convert data.npz --key x_train --in-place
    """
    import contextlib
    import sys

    from kmx_tune.convert.common import FAILED
    from kmx_tune.convert.core import convert_many
    from kmx_tune.errors import KmxError
    from kmx_tune.render import console, emit_json

    err = console(stderr=True)
    show_bar = not as_json and sys.stderr.isatty()
    bar: Any = None
    if show_bar:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )

    def on_start(src: Path) -> Any:
        if bar is None:
            return None
        task = bar.add_task(src.name, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update

    with bar if bar is not None else contextlib.nullcontext():
        report = convert_many(
            paths,
            output,
            to=to,
            keys=keys,
            add_channel_axis=add_channel_axis,
            verify=verify,
            force=force,
            in_place=in_place,
            dry_run=dry_run,
            on_start=on_start,
        )
    results = list(report.files)

    if as_json:
        emit_json({"to": to, "dry_run": dry_run, "files": [r.to_dict() for r in results]})
    else:
        _render(results)
    failed = [r for r in results if r.status == FAILED]
    if failed:
        if len(results) == 1:
            exc = KmxError(failed[0].message)
            exc.exit_code = failed[0].exit_code or 1
            raise exc
        raise KmxError(f"{len(failed)} of {len(results)} files failed; see above")


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]  # float from here on
    return str(n)


def _render(results: list[FileOutcome]) -> None:
    from kmx_tune.convert.common import CONVERTED, FAILED, NOTHING_TO_DO, PLANNED
    from kmx_tune.render import console

    out = console()
    for r in results:
        if r.status == FAILED:
            # a single failure is printed once, as the final "Error:" line
            if len(results) > 1:
                out.print(f"[red]✗[/red] {r.message}")
            continue
        if r.status == CONVERTED:
            rate = r.bytes_out / r.seconds / 1e6 if r.seconds else 0.0
            out.print(
                f"[green]✓[/green] {r.path} -> {r.output}  "
                f"({_size(r.bytes_out)} in {r.seconds:.2f} s, {rate:.0f} MB/s, check: {r.verified})"
            )
        elif r.status == PLANNED:
            out.print(f"{r.path} -> {r.output}  (dry run: nothing written)")
        elif r.status == NOTHING_TO_DO:
            out.print(f"[yellow]-[/yellow] {r.path}: nothing to convert, no file written")
        rows = [("array", "shape", "dtype", "layout", "action", "what happens")]
        rows += [
            (a.name, str(tuple(a.shape)), a.dtype, a.layout, a.action, a.note) for a in r.arrays
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for i, row in enumerate(rows):
            line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5]
            out.print("  " + line, style="bold" if i == 0 else None, markup=False)
        for t in r.removed_temps:
            out.print(f"  removed a temporary file left by an interrupted run: {t}")
