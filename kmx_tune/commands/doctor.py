"""``kmx-tune doctor``: one report, a line per check, the fix under each problem;
``--fix`` applies the fixes that are safe to apply and checks again.

Only click is imported at module level; the checks and rich load inside the command,
and neither numpy nor mxnet is imported at all (``--deep`` imports mxnet in the
target interpreter, not here)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kmx_tune.options import hardware_option, json_option, python_option

if TYPE_CHECKING:
    from rich.console import Console

    from kmx_tune.doctor import Report
    from kmx_tune.doctor.fix import FixPlan, FixReport

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
@click.option(
    "--fix",
    is_flag=True,
    help="Apply the fixes that are safe to apply (pip in the target, install-mxnet, "
    "set-format, environment variables into a file to source), then check again.",
)
@click.option("--yes", "-y", is_flag=True, help="With --fix: do not ask before applying.")
@click.option(
    "--env-file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help="With --fix: where the environment variables go "
    "(default: $XDG_CONFIG_HOME/kmx-tune/env.sh, else ~/.config/kmx-tune/env.sh).",
)
def doctor(
    python: str | None,
    hardware_file: str | None,
    as_json: bool,
    deep: bool,
    strict: bool,
    fix: bool,
    yes: bool,
    env_file: str | None,
) -> None:
    """Check a Keras-MXNet set-up: the MXNet flavor against the hardware, numpy,
    Keras-MXNet, keras.json and the tuning variables. Under each problem goes the
    exact command that fixes it.

    Without --python it checks the active virtual environment, else the active conda
    environment, else `python` on PATH, and says which in its first line; it does not
    check kmx-tune's own environment unless that has Keras or MXNet (or is named with
    --python). With nothing to check, it says where Keras-MXNet is installed or how to
    make an environment for it.

    --fix shows the fixes it can apply, asks (--yes: does not), applies them and
    checks again. Variables cannot be set in your shell from here: they are written
    to a file you load with `. FILE`.

    Exit status: 0 when nothing failed (warnings alone give 0, unless --strict),
    1 when a check (or, with --fix, a fix) failed, 2 for usage errors.

    \b
    Example:
      kmx-tune doctor
      kmx-tune doctor --python ~/venvs/keras/bin/python --deep
      kmx-tune doctor --fix --yes
      kmx-tune doctor --hardware gpu-box.json --json   # advice for another box
    """
    from kmx_tune.doctor import run_doctor
    from kmx_tune.render import finish

    if (yes or env_file) and not fix:
        from kmx_tune.errors import UsageError

        raise UsageError("--yes and --env-file go with --fix; add --fix to apply the fixes")
    report = run_doctor(python, hardware_file, deep=deep, strict=strict)
    if not fix:
        finish(report, as_json, render_report)
    finish(_fix(report, hardware_file, deep, strict, yes, env_file, as_json), as_json, _render_fix)


def _fix(
    report: Report,
    hardware_file: str | None,
    deep: bool,
    strict: bool,
    yes: bool,
    env_file: str | None,
    as_json: bool,
) -> FixReport:
    """Plan, ask, apply, check again."""
    import os
    from pathlib import Path

    from kmx_tune.doctor import run_doctor
    from kmx_tune.doctor.envfile import default_env_file, env_with
    from kmx_tune.doctor.fix import FixReport, apply_fixes, plan_fixes
    from kmx_tune.errors import UsageError
    from kmx_tune.render import console, plain
    from kmx_tune.target import Target

    plan = plan_fixes(report, Path(env_file) if env_file else default_env_file())
    if not as_json:
        render_report(report)
        _render_plan(console(), plan)
    if not plan.actions:
        return FixReport(report, plan)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                "nothing changed: add --yes to apply the fixes without a question "
                "(doctor --fix --yes)"
            )
        if not click.confirm(f"Apply {_count(len(plan.actions), 'fix', 'fixes')}?", err=True):
            return FixReport(report, plan, declined=True)
    err = console(stderr=True)
    outcomes, written = apply_fixes(
        plan,
        report.hardware,
        out=sys.stderr,
        log=lambda line: err.print(f"[bold]>[/] {plain(line)}"),
    )
    settings = [a.args for a in plan.env_actions] if written else []
    env = env_with(os.environ, settings)
    target = None
    if report.target is not None:
        target = Target(
            report.target.python, chosen_by=report.chosen_by, passed_over=report.passed_over
        )
    after = run_doctor(target, hardware_file, deep=deep, strict=strict, env=env)
    applied = {s[1]: (s[2] if s[0] == "export" else None) for s in settings}
    return FixReport(report, plan, outcomes, after, env_written=written, env_applied=applied)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _render_plan(out: Console, plan: FixPlan) -> None:
    from kmx_tune.render import plain

    out.print()
    if plan.actions:
        where = f" to {plain(plan.python)}" if plan.python else ""
        out.print(f"[bold]Fixes to apply{where}:[/bold]")
        for action in plan.actions:
            into = f"  (into {plain(str(plan.env_file))})" if action.kind == "env" else ""
            out.print(
                f"  {plain(action.command)}{into}  [dim]for {plain(', '.join(action.findings))}[/]"
            )
    else:
        out.print("Nothing to apply automatically.")
    if plan.skipped:
        out.print("[bold]Left to you:[/bold]")
        for skipped in plan.skipped:
            out.print(f"  {plain(skipped.finding)}: {plain(skipped.command)}")
            out.print(f"    [dim]{plain(skipped.why)}[/dim]")


def _render_fix(result: FixReport) -> None:
    from kmx_tune.render import console, plain

    out = console()
    if result.declined:
        console(stderr=True).print("Nothing changed.")
        return
    if not result.outcomes:
        return
    out.print()
    out.print("[bold]Applied:[/bold]")
    for outcome in result.outcomes:
        symbol, colour = ("✓", "green") if outcome.ok else ("✗", "red")
        out.print(
            f"  [{colour}]{symbol}[/{colour}] {plain(outcome.action.command)}: "
            f"{plain(outcome.message)}"
        )
    if result.env_written:
        path = str(result.plan.env_file)
        out.print()
        out.print(
            "The variables are in a file; load it in your shell (and in job scripts): "
            f"[bold]. {plain(_shell_path(path))}[/bold]"
        )
        try:
            text = result.plan.env_file.read_text(encoding="utf-8")
        except (OSError, UnicodeError):
            text = ""
        for line in text.splitlines():
            out.print(f"    [dim]{plain(line)}[/dim]")
    if result.after is not None:
        out.print()
        applied = ""
        if result.env_written:
            applied = f", with the variables of {plain(_shell_path(str(result.plan.env_file)))} set"
        out.print(f"[bold]Checked again{applied}:[/bold]")
        render_report(result.after)


def _shell_path(path: str) -> str:
    import shlex

    return shlex.quote(path)


def render_report(report: Report) -> None:
    from kmx_tune.render import console, plain

    out = console()
    target, hw, rec = report.target, report.hardware, report.recommendation
    if target is None:
        out.print("[bold]kmx-tune doctor[/bold]: no Python environment to check")
    else:
        why = "" if report.chosen_by == "--python" else f": {report.chosen_by}"
        out.print(
            f"[bold]kmx-tune doctor[/bold]: {plain(target.python)} "
            f"(Python {target.version_str}){plain(why)}"
        )
        if report.passed_over:
            out.print(f"[dim]  passed over: {plain('; '.join(report.passed_over))}[/dim]")
    gpu = hw.gpu_summary
    out.print(plain(f"hardware ({hw.source}): {hw.cpu.brand}; {gpu}"))
    out.print(plain(f"recommended MXNet: {' '.join(rec.requirements)}"))
    out.print()
    shown: dict[str, str] = {}  # fix -> the finding it was first shown under
    for finding in report.findings:
        symbol, colour = _SYMBOLS[finding.status]
        out.print(
            f"[{colour}]{symbol}[/{colour}] [bold]{plain(finding.id)}[/bold]: "
            f"{plain(finding.title)}"
        )
        if finding.status != "ok" or finding.detail:
            for line in finding.detail.splitlines():
                out.print(f"    [dim]{plain(line)}[/dim]")
        if finding.fix and finding.fix in shown:
            out.print(f"    fix: the same as for {plain(shown[finding.fix])} above")
        elif finding.fix:
            shown[finding.fix] = finding.id
            out.print(f"    fix: [bold]{plain(finding.fix)}[/bold]")
    out.print()
    fails, warns, oks = report.count("fail"), report.count("warn"), report.count("ok")
    summary = f"{fails} failed, {warns} warning{'s' if warns != 1 else ''}, {oks} ok"
    if report.strict and warns:
        summary += " (--strict: warnings fail)"
    colour = "red" if report.exit_code else "green"
    out.print(f"[{colour}]{summary}[/{colour}]")
