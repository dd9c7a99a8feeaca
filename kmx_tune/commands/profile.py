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
    top: int,
    as_json: bool,
    script: str,
    args: tuple[str, ...],
) -> None:
    """Run SCRIPT with ARGS under the MXNet profiler, as `python SCRIPT ARGS` would
    run it (argv, __main__, working directory and exit status pass through), then
    show the operators that took the most time, the share spent in layout
    transposes (what channels_last costs a Keras-MXNet model), and the path of
    the Chrome trace (open it in chrome://tracing or https://ui.perfetto.dev).

    MXNET_EXEC_BULK_EXEC_TRAIN=0 and MXNET_EXEC_BULK_EXEC_INFERENCE=0 are set for
    the script, so hybridized and symbolic graphs show each operator. Options for
    kmx-tune go before SCRIPT; everything after it goes to the script. With
    --json, the script's own output goes to stderr.

    \b
    Example:
      kmx-tune profile train.py --epochs 1
      kmx-tune profile --python ~/venvs/keras/bin/python --top 5 train.py
      kmx-tune profile --out /tmp/trace.json --json train.py > profile-summary.json
    """
    import dataclasses

    from kmx_tune.profiling import profile_script
    from kmx_tune.render import finish

    result = profile_script(
        script, args, target=find_target(python), out=out, script_stdout_to_stderr=as_json
    )
    finish(dataclasses.replace(result, top_n=top), as_json, render_text)


def render_text(result: ProfileResult) -> None:
    top = result.top_n if result.top_n is not None else len(result.operators)
    from rich.table import Table

    from kmx_tune.render import console

    out = console()
    out.print()
    version = f"mxnet {result.mxnet_version}" if result.mxnet_version else "mxnet"
    if not result.collected:
        out.print(f"[bold]Profile of {result.script}[/] ({version}): no statistics were saved")
        out.print("  the process ended before the profiler could write them (os._exit, a signal)")
    elif not result.operators:
        out.print(f"[bold]Profile of {result.script}[/] ({version}): no MXNet operator ran")
    else:
        out.print(
            f"[bold]Profile of {result.script}[/] ({version}): "
            f"{result.total_ms:,.1f} ms of operator time in {len(result.operators)} operators"
        )
        table = Table(box=None, pad_edge=False, header_style="bold")
        table.add_column("Operator")
        table.add_column("Count", justify="right")
        table.add_column("Total ms", justify="right")
        table.add_column("Avg ms", justify="right")
        table.add_column("Share", justify="right")
        for op in result.top(top):
            table.add_row(
                op.name,
                f"{op.count:,}",
                f"{op.total_ms:,.2f}",
                f"{op.avg_ms:,.3f}",
                f"{op.share:.1%}",
            )
        out.print(table)
        hidden = len(result.operators) - min(top, len(result.operators))
        if hidden:
            out.print(f"  ... and {hidden} more (--top {len(result.operators)} shows all)")
        names = ", ".join(op.name for op in result.transpose_operators)
        share = f"{result.transpose_share:.1%} of operator time ({names})" if names else "none"
        out.print(f"Layout transposes: {share}; {result.advice}")
    if result.trace:
        out.print(f"Trace: {result.trace} (open it in chrome://tracing or https://ui.perfetto.dev)")
    else:
        out.print("Trace: none was written")
    out.print(
        "Note: kmx-tune set "
        + " and ".join(f"{k}={v}" for k, v in result.env.items())
        + " so hybridized graphs show per-operator detail."
    )
    if result.exit_status != 0:
        why = f" ({result.script_error})" if result.script_error else ""
        out.print(f"The script exited with status {result.exit_status}{why}.")
