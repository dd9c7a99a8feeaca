"""``kmx-tune convert``: transpose .npy/.npz image datasets on disk.

Only click is imported at module level; numpy, the converter and rich load inside
the command."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kmx_tune.formats import CHANNELS_FIRST, FORMATS
from kmx_tune.options import dry_run_option, json_option, python_option

if TYPE_CHECKING:
    from rich.console import Console

    from kmx_tune.convert.common import FileOutcome, Progress
    from kmx_tune.convert.core import ConvertReport


@click.command("convert")
@click.argument(
    "paths", metavar="PATH...", nargs=-1, required=True, type=click.Path(path_type=Path)
)
@click.option(
    "--to",
    type=click.Choice(FORMATS),
    default=CHANNELS_FIRST,
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
@dry_run_option
@click.option(
    "--verify", is_flag=True, help="Re-read the whole output and compare it with the source."
)
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option(
    "-r", "--recursive", is_flag=True, help="Folders: convert the files in their whole tree."
)
@click.option(
    "-j",
    "--jobs",
    type=int,
    metavar="N",
    help="Files converted at once, in worker processes (default: one per core, up to 4, "
    "for many small files; else 1).",
)
@python_option
@click.option(
    "--architecture",
    metavar="FILE",
    type=click.Path(),
    help="A Keras weights file's architecture (what model.to_json() wrote).",
)
@json_option
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
    recursive: bool,
    jobs: int | None,
    python: str | None,
    architecture: str | None,
    as_json: bool,
) -> None:
    """Transpose the image arrays in .npy/.npz/.h5 files between channels_last
    (N, H, W, C) and channels_first (N, C, H, W), on disk, in bounded memory;
    convert saved Keras models (.h5) and prove the result.

    Detects each array's layout and never transposes twice; copies labels
    unchanged; refuses ambiguous shapes unless --key names them. Writes
    NAME.channels_first.npy (or .npz) beside the input under a temporary name
    and renames it only once it is complete, synced and checked. A Keras model
    is converted by the Keras of --python (keras-mxnet's Python) and written
    only if, on random inputs, it gives the original model's outputs.

    \b
    Example:
      kmx-tune convert data.npz --dry-run
      kmx-tune convert mnist.npz --add-channel-axis
      kmx-tune convert x_train.npy x_test.npy -o converted/
      kmx-tune convert data.npz --key x_train --in-place
      kmx-tune convert cifar10.h5
      kmx-tune convert model.h5 --python ~/venvs/keras/bin/python
      kmx-tune convert shards/ --recursive -o converted/
    """
    from kmx_tune.convert.core import convert_many
    from kmx_tune.render import finish

    with _progress_bar(show=not as_json) as on_start:
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
            python=python,
            architecture=architecture,
            recursive=recursive,
            jobs=jobs,
        )
    finish(report, as_json, render_report)


@contextlib.contextmanager
def _progress_bar(show: bool) -> Iterator[Callable[[Path], Progress | None] | None]:
    """A progress bar on stderr, a line per file, while the block runs; only on a
    terminal."""
    import sys

    if not show or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    from kmx_tune.render import console, plain

    bar = Bar(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console(stderr=True),
        transient=True,
    )

    def on_start(src: Path) -> Progress | None:
        task = bar.add_task(plain(src.name, one_line=True), total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return update

    with bar:
        yield on_start


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]  # float from here on
    return str(n)


def render_report(report: ConvertReport) -> None:
    """A line per file and a table of its arrays; failures as ``Error:`` on stderr: the
    one failure of a single input in its own words, else how many failed."""
    from kmx_tune.render import console, safe

    out = console()
    several = len(report.files) > 1
    for outcome in report.files:
        _render_outcome(out, outcome, several, report.dry_run)
    if several:
        counts: dict[str, int] = {}
        for outcome in report.files:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        parts = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
        out.print(f"{len(report.files)} files: {parts}")
    _render_next(out, report)
    failed = report.failed
    if failed:
        if several:
            message = f"{len(failed)} of {len(report.files)} files failed; see above"
        else:
            message = failed[0].message
        click.echo("Error: " + safe(message, one_line=True), err=True)


def _render_outcome(out: Console, r: FileOutcome, several: bool, dry_run: bool) -> None:
    from kmx_tune.convert.common import CONVERTED, FAILED, NOTHING_TO_DO, PLANNED, SKIPPED
    from kmx_tune.render import plain

    path, output = plain(r.path, one_line=True), plain(r.output, one_line=True)
    if r.status == FAILED:
        # a single failure is printed once, as the final "Error:" line
        if several:
            out.print(f"[red]✗[/red] {plain(r.message, one_line=True)}")
        if dry_run and r.arrays:  # refused arrays: the dry run shows every one
            _render_arrays(out, r)
        return
    if r.status == CONVERTED:
        rate = r.bytes_out / r.seconds / 1e6 if r.seconds else 0.0
        speed = f", {rate:.0f} MB/s" if rate >= 1 else ""  # a small model: time, not speed
        out.print(
            f"[green]✓[/green] {path} -> {output}  "
            f"({_size(r.bytes_out)} in {r.seconds:.2f} s{speed}, check: {r.verified})"
        )
    elif r.status == PLANNED:
        out.print(f"{path} -> {output}  (dry run: nothing written)")
    elif r.status == SKIPPED:
        out.print(f"[green]=[/green] {path} -> {output}  (already converted and verified)")
        _render_removed(out, r)
        return
    elif r.status == NOTHING_TO_DO:
        out.print(f"[yellow]-[/yellow] {path}: nothing to convert, no file written")
    _render_arrays(out, r)
    if r.message and r.status in (CONVERTED, PLANNED):
        out.print("  " + plain(r.message, one_line=True))
    _render_removed(out, r)


def _render_arrays(out: Console, r: FileOutcome) -> None:
    """The table of a file's arrays: name, shape, dtype, layout, action and why."""
    from kmx_tune.render import safe

    table = [("array", "shape", "dtype", "layout", "action", "what happens")]
    table += [(a.name, str(tuple(a.shape)), a.dtype, a.layout, a.action, a.note) for a in r.arrays]
    rows = [[safe(cell, one_line=True) for cell in row] for row in table]  # names are data
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[5]
        out.print("  " + line, style="bold" if i == 0 else None, markup=False)


def _render_removed(out: Console, r: FileOutcome) -> None:
    from kmx_tune.render import plain

    for temp in r.removed_temps:
        out.print(
            f"  removed a temporary file left by an interrupted run: {plain(temp, one_line=True)}"
        )


def _render_next(out: Console, report: ConvertReport) -> None:
    """After a conversion: which file the training script should load now (the
    converted data is under a new name unless it was converted in place)."""
    import os

    from kmx_tune.convert.common import CONVERTED
    from kmx_tune.render import plain

    done = [f for f in report.files if f.status == CONVERTED and f.output]
    if not done:
        return
    if all(os.path.realpath(f.path) == f.output for f in done):
        out.print(
            "Next: your script loads the same name as before; it now holds "
            f"{report.to} data (kmx-tune migrate updates the model code)"
        )
        return
    if len(done) > 1:
        out.print(
            "Next: load the converted files (the names after -> above) in your script instead "
            "of the originals, or convert with --in-place to keep their names"
        )
        return
    src, output = Path(done[0].path), Path(str(done[0].output))
    if src.parent == output.parent:
        src, output = Path(src.name), Path(output.name)
    out.print(
        f"Next: load {plain(output, one_line=True)} in your script (instead of "
        f"{plain(src, one_line=True)}), or convert with --in-place to keep the name"
    )
