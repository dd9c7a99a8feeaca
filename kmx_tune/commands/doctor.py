"""``kmx-tune doctor``: one report, a line per check, the fix under each problem.

Only click is imported at module level; the checks and rich load inside the command,
and neither numpy nor mxnet is imported at all (``--deep`` imports mxnet in the
target interpreter, not here)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kmx_tune.doctor import Report

_SYMBOLS = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


@click.command("doctor")
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="The Python to check (a path, a venv folder, or a name on PATH). "
    "Default: the one running kmx-tune.",
)
@click.option(
    "--hardware",
    "hardware_file",
    # a folder is refused by load_profile, in its own words
    type=click.Path(),
    help="Use a profile from `kmx-tune probe --json` instead of probing this machine.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
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
    from kmx_tune.render import emit_json

    report = run_doctor(python, hardware_file, deep=deep)
    if as_json:
        emit_json(report.to_json(strict))
    else:
        render_report(report, strict)
    code = report.exit_code(strict)
    if code:
        raise click.exceptions.Exit(code)


def render_report(report: Report, strict: bool) -> None:
    from rich.markup import escape

    from kmx_tune.render import console

    out = console()
    target, hw, rec = report.target, report.hardware, report.recommendation
    out.print(
        f"[bold]kmx-tune doctor[/bold]: {escape(target.python)} (Python {target.version_str})"
    )
    gpu = hw.gpu_summary
    out.print(escape(f"hardware ({hw.source}): {hw.cpu.brand}; {gpu}"))
    out.print(escape(f"recommended MXNet: {' '.join(rec.requirements)}"))
    out.print()
    for finding in report.findings:
        symbol, colour = _SYMBOLS[finding.status]
        out.print(
            f"[{colour}]{symbol}[/{colour}] [bold]{escape(finding.id)}[/bold]: "
            f"{escape(finding.title)}"
        )
        if finding.status != "ok" or finding.detail:
            for line in finding.detail.splitlines():
                out.print(f"    [dim]{escape(line)}[/dim]")
        if finding.fix:
            out.print(f"    fix: [bold]{escape(finding.fix)}[/bold]")
    out.print()
    fails, warns, oks = report.count("fail"), report.count("warn"), report.count("ok")
    summary = f"{fails} failed, {warns} warning{'s' if warns != 1 else ''}, {oks} ok"
    if strict and warns:
        summary += " (--strict: warnings fail)"
    colour = "red" if report.exit_code(strict) else "green"
    out.print(f"[{colour}]{summary}[/{colour}]")
