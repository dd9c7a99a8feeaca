"""``kmx-tune profile``: run a script under the MXNet profiler."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kmx_tune.options import find_target, json_option, python_option

if TYPE_CHECKING:
    from kmx_tune.profiling import ProfileResult


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@python_option
@click.option(
    "--out",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="Where to write the Chrome trace. Default: SCRIPTNAME.profile.json here.",
)
@click.option("--force", is_flag=True, help="Replace the trace file if it exists.")
@click.option(
    "--steps",
    metavar="N",
    type=click.IntRange(min=1),
    help="Profile only the first N training steps (each ends with a backward pass: Keras-MXNet, "
    "Module or Gluon autograd), then run the rest unprofiled: a small trace.",
)
@click.option(
    "--top",
    default=15,
    show_default=True,
    metavar="N",
    type=click.IntRange(min=1),
    help="How many operators to list.",
)
@json_option
@click.argument("script", type=click.Path(dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def profile(
    python: str | None,
    out: str | None,
    force: bool,
    steps: int | None,
    top: int,
    as_json: bool,
    script: str,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT with ARGS under the MXNet profiler, as `python SCRIPT ARGS` would
    run it (argv, __main__, working directory and exit status pass through), then
    show the operators that took the most time, what the data format costs (for a
    channels_last model: how much of the operator time channels_first would save,
    from BatchNorm over the last axis and from transposes), and the Chrome trace
    (open it in chrome://tracing or https://ui.perfetto.dev).

    MXNET_EXEC_BULK_EXEC_TRAIN=0 and MXNET_EXEC_BULK_EXEC_INFERENCE=0 are set for
    the script, so hybridized and symbolic graphs show each operator. An existing
    trace file is kept unless --force. Options for kmx-tune go before SCRIPT;
    everything after it goes to the script. With --json, the script's own output
    goes to stderr.

    \b
    Example:
      kmx-tune profile train.py --epochs 1
      kmx-tune profile --python ~/venvs/keras/bin/python --steps 20 train.py
      kmx-tune profile --out /tmp/trace.json --force --json train.py > summary.json
    """
    import dataclasses

    from kmx_tune.profiling import profile_script
    from kmx_tune.render import finish

    result = profile_script(
        script,
        args,
        target=find_target(python),
        out=out,
        force=force,
        steps=steps,
        script_stdout_to_stderr=as_json,
    )
    finish(dataclasses.replace(result, top_n=top), as_json, render_text)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{n / 1024:.0f} KB"


def render_text(result: ProfileResult) -> None:
    from rich.table import Table

    from kmx_tune.profiling import LARGE_TRACE_BYTES
    from kmx_tune.render import console, plain

    top = result.top_n if result.top_n is not None else len(result.operators)
    out = console()
    if not out.is_terminal:
        out.width = 1000  # piped or redirected: keep one line per table row
    out.print()
    script = plain(result.script)
    version = f"mxnet {plain(result.mxnet_version)}" if result.mxnet_version else "mxnet"
    steps = ""
    if result.steps is not None:
        steps = f", first {min(result.steps, result.profiled_steps or 0)} steps"
    if not result.collected:
        out.print(f"[bold]Profile of {script}[/] ({version}): no statistics were saved")
        out.print("  the process ended before the profiler could write them (os._exit, a signal)")
    elif not result.operators:
        out.print(f"[bold]Profile of {script}[/] ({version}{steps}): no MXNet operator ran")
    else:
        out.print(
            f"[bold]Profile of {script}[/] ({version}{steps}): "
            f"{result.total_ms:,.1f} ms of operator time in {len(result.operators)} operators"
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("Operator", no_wrap=True)
        for name in ("Count", "Total ms", "Avg ms", "Share"):
            table.add_column(name, justify="right", no_wrap=True)
        for op in result.top(top):
            table.add_row(
                plain(op.name),
                f"{op.count:,}",
                f"{op.total_ms:,.2f}",
                f"{op.avg_ms:,.3f}",
                f"{op.share:.1%}",
            )
        out.print(table)
        hidden = len(result.operators) - min(top, len(result.operators))
        if hidden:
            out.print(f"  ... and {hidden} more (--top {len(result.operators)} shows all)")
        out.print(f"Layout: {plain(result.advice)}")
    if result.trace:
        size = f", {_size(result.trace_bytes)}" if result.trace_bytes is not None else ""
        out.print(
            f"Trace: {plain(result.trace)} ({size.lstrip(', ') or 'written'}; open it in "
            "chrome://tracing or https://ui.perfetto.dev)"
        )
        if result.steps is None and (result.trace_bytes or 0) > LARGE_TRACE_BYTES:
            out.print("  --steps N profiles only the first N steps and keeps the trace small")
    else:
        out.print("Trace: none was written")
    out.print(
        "Note: kmx-tune set "
        + " and ".join(f"{k}={v}" for k, v in result.env.items())
        + " so hybridized graphs show per-operator detail."
    )
    if result.exit_status != 0:
        why = f" ({plain(result.script_error)})" if result.script_error else ""
        out.print(f"The script exited with status {result.exit_status}{why}.")
