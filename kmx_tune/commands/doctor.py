"""``kmx-tune doctor``: one report, a line per check, the fix under each problem.

Only click is imported at module level; the checks and rich load inside the command,
and neither numpy nor mxnet is imported at all (``--deep`` imports mxnet in the
target interpreter, not here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from kmx_tune.options import hardware_option, json_option, python_option

if TYPE_CHECKING:
    from kmx_tune.doctor import Report

_SYMBOLS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


@click.command("doctor")
@python_option
@hardware_option
@json_option
@click.option(
    "--deep",
    is_flag=True,
    help="Also import mxnet and keras in the target Python (slower: about 2 s).",
)
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too.")
def doctor(
    python: str | None, hardware_file: str | None, as_json: bool, deep: bool, strict: bool
) -> None:
    """Check a Keras-MXNet set-up: the MXNet flavor against the hardware, numpy,
    Keras-MXNet, keras.json and the tuning variables. Under each problem goes the
    exact command that fixes it.

    Exit status: 0 when nothing failed (warnings alone give 0, unless --strict),
    1 when a check failed, 2 for usage errors.

    \b
    Example:
      kmx-tune doctor
      kmx-tune doctor --python ~/venvs/keras/bin/python --deep
      kmx-tune doctor --hardware gpu-box.json --json   # advice for another box
    """
    from kmx_tune.doctor import run_doctor
    from kmx_tune.render import finish
    from kmx_tune.target import Target

    report = run_doctor(Target.find(python), hardware_file, deep=deep, strict=strict)
    finish(report, as_json, render_report)


def render_report(report: Report) -> None:
    from kmx_tune.render import console, plain

    out = console()
    target, hw, rec = report.target, report.hardware, report.recommendation
    out.print(f"[bold]kmx-tune doctor[/bold]: {plain(target.python)} (Python {target.version_str})")
    gpu = hw.gpu_summary
    out.print(plain(f"hardware ({hw.source}): {hw.cpu.brand}; {gpu}"))
    out.print(plain(f"recommended MXNet: {' '.join(rec.requirements)}"))
    out.print()
    for finding in report.findings:
        symbol, colour = _SYMBOLS[finding.status]
        out.print(
            f"[{colour}]{symbol}[/{colour}] [bold]{plain(finding.id)}[/bold]: "
            f"{plain(finding.title)}"
        )
        if finding.status != "ok" or finding.detail:
            for line in finding.detail.splitlines():
                out.print(f"    [dim]{plain(line)}[/dim]")
        if finding.fix:
            out.print(f"    fix: [bold]{plain(finding.fix)}[/bold]")
    out.print()
    fails, warns, oks = report.count("fail"), report.count("warn"), report.count("ok")
    summary = f"{fails} failed, {warns} warning{'s' if warns != 1 else ''}, {oks} ok"
    if report.strict and warns:
        summary += " (--strict: warnings fail)"
    colour = "red" if report.exit_code else "green"
    out.print(f"[{colour}]{summary}[/{colour}]")
