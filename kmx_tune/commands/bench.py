"""``kmx-tune bench``: channels_first against channels_last with the installed MXNet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kmx_tune.options import find_target, json_option, python_option

if TYPE_CHECKING:
    from kmx_tune.bench import BenchResult


@click.command()
@python_option
@click.option(
    "--ctx",
    type=click.Choice(["cpu", "gpu"]),
    default="cpu",
    show_default=True,
    help="Run on the CPU or on GPU 0.",
)
@click.option(
    "--batch",
    default=32,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Images per training step.",
)
@click.option(
    "--repeats",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Timed steps per form, after 3 warm-up steps.",
)
@json_option
def bench(python: str | None, ctx: str, batch: int, repeats: int, as_json: bool) -> None:
    """Time a small convolution stack (3 conv 3x3 + ReLU layers, 32x32x3 images,
    forward and backward) with the MXNet installed in the target, in two forms:
    channels_first, and channels_last as Keras-MXNet runs it (transpose to NCHW,
    convolve, transpose back, around every convolution). Prints images/s for
    each, the ratio, and their spread (interquartile range over the repeats).

    \b
    Example:
      kmx-tune bench
      kmx-tune bench --python ~/venvs/keras/bin/python --batch 64
      kmx-tune bench --ctx gpu --json
    """
    from kmx_tune.bench import run_bench
    from kmx_tune.render import finish

    target = find_target(python)
    if not as_json:
        click.echo("Measuring (a few seconds per form)...", err=True)
    finish(run_bench(target, ctx=ctx, batch=batch, repeats=repeats), as_json, render_text)


def render_text(result: BenchResult) -> None:
    from rich.table import Table

    from kmx_tune.render import console

    out = console()
    version = f"mxnet {result.mxnet_version}" if result.mxnet_version else "MXNet"
    h, w, c = result.image
    layers = "-".join(str(n) for n in result.channels)
    out.print(
        f"[bold]{version}[/] on {result.ctx}: conv 3x3 x{len(result.channels)} ({layers} filters), "
        f"{h}x{w}x{c} images, batch {result.batch}, forward+backward, "
        f"{result.repeats} repeats after {result.warmup} warm-up"
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("Form")
    table.add_column("images/s", justify="right")
    table.add_column("IQR", justify="right")
    table.add_column("min-max", justify="right")
    table.add_column("ms/step", justify="right")
    labels = {
        "channels_first": "channels_first (NCHW)",
        "channels_last": "channels_last (transpose+conv+transpose)",
    }
    for stats in result.forms:
        table.add_row(
            labels.get(stats.form, stats.form),
            f"{stats.images_per_s:,.1f}",
            f"{stats.q1:,.1f}-{stats.q3:,.1f}",
            f"{stats.min:,.1f}-{stats.max:,.1f}",
            f"{stats.step_ms:,.1f}",
        )
    out.print(table)
    out.print(result.verdict)
    if result.ctx == "cpu" and result.omp_num_threads is None and result.cpu_count:
        out.print(f"({result.cpu_count} CPUs; OMP_NUM_THREADS not set)")
