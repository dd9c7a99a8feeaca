"""``kmx-tune bench``: channels_first against channels_last, and the best settings,
measured by training a real model with the installed MXNet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kmx_tune.options import find_target, json_option, python_option

if TYPE_CHECKING:
    from rich.console import Console

    from kmx_tune.bench import BenchResult, Cell


@click.command()
@python_option
@click.option(
    "--model",
    "model_spec",
    metavar="FILE:FUNCTION",
    help="Time your own model: FUNCTION in FILE takes no arguments and returns a compiled "
    "Keras model built for K.image_data_format(). Default: kmx-tune's representative CNN.",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Only your current settings, fewer rounds (at most about 30 s); no settings sweep.",
)
@click.option(
    "--inference", is_flag=True, help="Time inference (predict_on_batch) instead of training."
)
@click.option(
    "--ctx",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Run on the CPU or on GPU 0.",
)
@click.option(
    "--batch",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Images per step.",
)
@click.option(
    "--repeats",
    default=None,
    type=click.IntRange(min=1),
    metavar="N",
    help="Rounds (each runs every cell 2 steps, cells alternating). Default: 8, --quick 6.",
)
@json_option
def bench(
    python: str | None,
    model_spec: str | None,
    quick: bool,
    inference: bool,
    ctx: str,
    batch: int,
    repeats: int | None,
    as_json: bool,
) -> None:
    """Train a real model for a few steps in both image data formats with the MXNet
    (and Keras) installed in the target, and print how much faster channels_first
    is, which layer types make the difference, and the fastest settings found.

    With Keras (keras-mxnet) in the target it trains kmx-tune's representative CNN
    (Conv2D + BatchNormalization + ReLU blocks, max-pooling, Dense; 32x32x3 images)
    or your model (--model FILE:FUNCTION; FILE is imported, its __main__ block does
    not run); without Keras, the same network as the MXNet graph Keras-MXNet builds.
    The settings swept: OMP_NUM_THREADS (1, physical cores, logical cores),
    MXNET_EXEC_BULK_EXEC_TRAIN (or _INFERENCE), KMP_AFFINITY on Intel OpenMP builds,
    MXNET_CUDNN_AUTOTUNE_DEFAULT with --ctx gpu. All cells alternate, and each figure
    is the median over the rounds. A time budget ends the default run within
    about 2 minutes, --quick within about 30 s.

    \b
    Example:
      kmx-tune bench --python ~/venvs/keras/bin/python
      kmx-tune bench --python ~/venvs/keras/bin/python --model train.py:build_model
      kmx-tune bench --quick --json
    """
    from kmx_tune.bench import parse_model_spec, run_bench
    from kmx_tune.render import finish

    model = parse_model_spec(model_spec) if model_spec is not None else None
    target = find_target(python)

    def progress(text: str) -> None:
        from kmx_tune.render import safe

        click.echo(safe(text, one_line=True), err=True)

    result = run_bench(
        target,
        ctx=ctx,
        batch=batch,
        rounds=repeats,
        quick=quick,
        inference=inference,
        model=model,
        progress=None if as_json else progress,
    )
    finish(result, as_json, render_text)


def _console() -> Console:
    from kmx_tune.render import console

    out = console()
    if not out.is_terminal:
        # piped or redirected: rich would fold table rows at 80 columns
        out.width = 1000
    return out


def _value(value: str | None, current: str | None) -> str:
    from kmx_tune.render import plain

    text = "unset" if value is None else plain(value)
    return f"{text} (yours)" if value == current else text


def render_text(result: BenchResult) -> None:
    from rich.table import Table

    from kmx_tune.bench.model import settings_text
    from kmx_tune.render import plain

    out = _console()
    versions = [f"mxnet {result.mxnet_version}" if result.mxnet_version else "MXNet"]
    if result.keras_version:
        versions.append(f"keras {result.keras_version}")
    out.print(
        f"[bold]kmx-tune bench[/]: {plain(result.python)} ({', '.join(map(plain, versions))}) "
        f"on {result.ctx}"
    )
    model = result.model
    shapes = model.input_shapes.get(result.current_format) or next(
        iter(model.input_shapes.values()), []
    )
    shape = "x".join(str(d) for d in shapes[0][1:]) if shapes else "?"
    what = "inference steps (predict_on_batch)" if result.mode == "inference" else "training steps"
    out.print(f"Model: {plain(model.description)}")
    layers = ", ".join(f"{n} {plain(k)}" for k, n in model.layers.items())
    params = f", {model.params:,} parameters" if model.params else ""
    out.print(f"  layers: {layers}{params}; input {shape}, batch {result.batch}; {what}")
    load = (
        f"; load average {result.load_average[0]:.1f} at the start, {result.load_average[1]:.1f} "
        "at the end"
        if result.load_average
        else ""
    )
    cpus = f"{result.cpu_count} CPUs ({result.physical_cores} physical cores)"
    out.print(
        f"Measured: {result.rounds} rounds x {result.steps_per_round} steps of each cell after "
        f"{result.warmup} warm-up steps, cells alternating; {cpus}{load}"
    )
    for note in result.notes:
        out.print(f"Note: {plain(note)}")

    reference = result.reference
    out.print()
    out.print(f"[bold]Your settings[/] ({plain(settings_text(reference.settings))}):")
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name, justify in (
        ("Format", "left"),
        ("ms/step", "right"),
        ("IQR", "right"),
        ("min-max", "right"),
        ("images/s", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for fmt in ("channels_first", "channels_last"):
        cell = result.current_cell(fmt)
        mark = " (your keras.json)" if fmt == result.current_format else ""
        table.add_row(
            fmt + mark,
            f"{cell.step_ms.median:,.1f}",
            f"{cell.step_ms.q1:,.1f}-{cell.step_ms.q3:,.1f}",
            f"{cell.step_ms.min:,.1f}-{cell.step_ms.max:,.1f}",
            f"{cell.images_per_s:,.1f}",
        )
    out.print(table)
    out.print(f"[bold]{result.verdict}[/]")

    _render_attribution(out, result)
    if len({c.settings for c in result.cells}) > 1:
        _render_settings(out, result)
    _render_best(out, result)


def _render_attribution(out: Console, result: BenchResult) -> None:
    from rich.table import Table

    rows = result.attribution
    if not rows:
        return
    total_first = sum(r.channels_first_ms for r in rows)
    total_last = sum(r.channels_last_ms for r in rows)
    out.print()
    out.print(
        f"[bold]Where the difference goes[/] (MXNet profiler, operator ms per step, "
        f"{result.profiled_steps} steps of each format):"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("Layer type (operators)", no_wrap=True)
    for name in ("channels_first", "channels_last", "difference"):
        table.add_column(name, justify="right", no_wrap=True)
    scale = sum(abs(r.difference_ms) for r in rows) or 1.0
    shown = [r for r in rows if abs(r.difference_ms) >= 0.03 * scale][:8]
    rest = [r for r in rows if r not in shown]
    for row in shown:
        table.add_row(
            row.kind,
            f"{row.channels_first_ms:,.1f}",
            f"{row.channels_last_ms:,.1f}",
            f"{row.difference_ms:+,.1f}",
        )
    if rest:
        first = sum(r.channels_first_ms for r in rest)
        last = sum(r.channels_last_ms for r in rest)
        table.add_row(
            f"{len(rest)} more types", f"{first:,.1f}", f"{last:,.1f}", f"{last - first:+,.1f}"
        )
    table.add_row(
        "all operators",
        f"{total_first:,.1f}",
        f"{total_last:,.1f}",
        f"{total_last - total_first:+,.1f}",
        style="bold",
    )
    out.print(table)
    costs = [r for r in shown if r.difference_ms > 0]
    savings = [r for r in shown if r.difference_ms < 0]
    if costs:
        out.print(
            f"Largest cost of channels_last: {costs[0].kind}, "
            f"{costs[0].difference_ms:+,.1f} ms per step"
            + (
                "; cheaper in channels_last: "
                + ", ".join(f"{r.kind} ({r.difference_ms:+,.1f} ms)" for r in savings)
                if savings
                else ""
            )
        )


def _cell_text(cell: Cell) -> str:
    return f"{cell.step_ms.median:,.1f} ({cell.speedup.median:.2f}x)"


def _render_settings(out: Console, result: BenchResult) -> None:
    from rich.table import Table

    from kmx_tune.render import plain

    current = dict(result.reference.settings)
    names = [name for name, _ in result.reference.settings]
    out.print()
    out.print(
        "[bold]Settings[/] (ms per step, median; in brackets: speedup over your current "
        f"set-up, {result.current_format} with your settings):"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in names:
        table.add_column(plain(name), no_wrap=True)
    table.add_column("channels_first", justify="right", no_wrap=True)
    table.add_column("channels_last", justify="right", no_wrap=True)
    rows: dict[tuple[tuple[str, str | None], ...], dict[str, Cell]] = {}
    for cell in result.cells:
        rows.setdefault(cell.settings, {})[cell.format] = cell
    best = result.best
    for settings, by_format in rows.items():
        values = dict(settings)
        texts = []
        for fmt in ("channels_first", "channels_last"):
            cell = by_format[fmt]
            text = _cell_text(cell)
            texts.append(f"[bold]{text}[/]" if cell is best else text)
        table.add_row(*[_value(values[n], current.get(n)) for n in names], *texts)
    out.print(table)


def _render_best(out: Console, result: BenchResult) -> None:
    from kmx_tune.bench.model import settings_text
    from kmx_tune.render import plain

    best = result.best
    exports, commands = result.changes(best)
    out.print()
    spread = f"IQR {best.speedup.q1:.2f}-{best.speedup.q3:.2f}"
    if best is result.reference or (not exports and not commands):
        out.print("[bold]Best:[/] your current set-up; nothing measured faster.")
        return
    what = f"{best.format}, {plain(settings_text(best.settings))}"
    out.print(
        f"[bold]Best:[/] {what}: {best.speedup.median:.2f}x as fast as your current set-up "
        f"({spread})"
    )
    if best.speedup.q1 <= 1.0:
        out.print("  (the spread reaches 1.0: not clearly faster on this machine)")
    for line in exports:
        out.print(f"  {plain(line)}")
    for line in commands:
        out.print(f"  {line}")
    if commands:
        out.print(
            "  then convert the saved image data (`kmx-tune convert`) and the model code "
            "(`kmx-tune migrate`)"
        )
    if exports:
        out.print("  (put the exports where your training shell starts, e.g. ~/.bashrc)")
