"""``kmx-tune install-mxnet``: the right MXNet flavor, verified, or the old state back."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from kmx_tune.installer import InstallPlan, InstallResult


@click.command("install-mxnet")
@click.option(
    "--python",
    "python",
    metavar="PATH",
    help="The Python to install into (an interpreter or a venv folder). Default: this one.",
)
@click.option(
    "--flavor", metavar="NAME", help="Install this package instead of the advice, e.g. mxnet-cu117."
)
@click.option(
    "--version", "version", metavar="V", help="Install this release instead of the newest."
)
@click.option("--cpu", is_flag=True, help="Pick a CPU flavor even when there is a usable GPU.")
@click.option(
    "--hardware",
    # a folder is refused by load_profile, in its own words
    type=click.Path(),
    metavar="FILE",
    help="Plan for the machine in this `kmx-tune probe` JSON instead of this one.",
)
@click.option(
    "--dry-run", is_flag=True, help="Show the plan and check it with pip; change nothing."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing the environment.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan or the result as JSON.")
@click.option("--index-url", metavar="URL", help="Passed to pip.")
@click.option("--extra-index-url", metavar="URL", multiple=True, help="Passed to pip.")
@click.option(
    "--find-links", metavar="DIR", multiple=True, help="Passed to pip: a folder of wheels."
)
@click.option("--no-index", is_flag=True, help="Passed to pip: use only --find-links.")
def install_mxnet(
    python: str | None,
    flavor: str | None,
    version: str | None,
    cpu: bool,
    hardware: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    find_links: tuple[str, ...],
    no_index: bool,
) -> None:
    """Install the right MXNet flavor into a Python, verify it, roll back on failure.

    Plans from this machine's CPU and GPUs (or --hardware FILE): every other MXNet
    distribution is uninstalled first (all flavors write the same `mxnet` module),
    then PACKAGE==VERSION and numpy<1.24 are installed with the target's own pip.
    A fresh process then imports mxnet, checks its build features and runs a tiny
    operation (on gpu(0) for a GPU flavor). If pip or that check fails, exactly
    what was installed before is put back. Your pip configuration (index, proxy,
    certificates) applies; the index options are passed through to pip.

    Exit status: 0 installed (or a dry run), 1 failed and rolled back, 2 bad input.

    \b
    Example:
      kmx-tune install-mxnet --dry-run
      kmx-tune install-mxnet --python ~/venvs/keras/bin/python --yes
      kmx-tune install-mxnet --flavor mxnet-native --version 1.8.0.post0
      kmx-tune install-mxnet --no-index --find-links ~/wheels --yes
    """
    from kmx_tune import installer
    from kmx_tune.errors import UsageError
    from kmx_tune.hardware import get_hardware
    from kmx_tune.render import console, emit_json
    from kmx_tune.target import inspect_target

    target = inspect_target(python)
    if not target.has_pip:
        raise UsageError(
            f"--python {target.python}: has no pip; add it with `{target.python} -m ensurepip` "
            "and run this again"
        )
    plan = installer.plan_install(
        target, get_hardware(hardware), flavor=flavor, version=version, cpu_only=cpu
    )
    pip = installer.PipOptions(index_url, extra_index_url, find_links, no_index)
    out = console()
    err = console(stderr=True)
    installer.check_available(plan, pip)

    if dry_run:
        if as_json:
            emit_json({"schema": "kmx-tune/install-plan/1", "dry_run": True, **plan.to_json()})
        else:
            _show_plan(out, plan)
            out.print("Dry run: nothing changed.")
        return
    if not as_json:
        _show_plan(out, plan)
    if not (yes or sys.stdin.isatty()):
        raise UsageError(
            "nothing changed: add --yes to install without a question "
            "(or --dry-run to see the plan)"
        )
    if not yes and not click.confirm("Go ahead?", default=False, err=True):
        err.print("Nothing changed.")
        click.get_current_context().exit(1)

    def log(line: str) -> None:
        err.print(f"[bold]>[/] {line}", markup=True)

    result = installer.execute(plan, pip, out=None if as_json else sys.stderr, log=log)
    if as_json:
        emit_json({"schema": "kmx-tune/install-result/1", **result.to_json()})
    else:
        _show_result(out, result)
    if result.exit_code:
        click.get_current_context().exit(result.exit_code)


def _show_plan(out: Console, plan: InstallPlan) -> None:
    from rich.markup import escape

    out.print(
        f"Plan for {escape(plan.python)} (Python {plan.python_version}, {plan.platform})",
        style="bold",
    )
    if plan.uninstall:
        gone = ", ".join(f"{d.name} {d.version}" for d in plan.uninstall)
        out.print(f"  uninstall  {escape(gone)}  (all flavors write the same mxnet module)")
    out.print(f"  install    {escape(' '.join(plan.requirements))}")
    if [d.requirement for d in plan.installed] == [plan.requirement]:
        out.print(f"  note       {escape(plan.requirement)} is there already: this checks it again")
    for i, reason in enumerate(plan.reasons):
        out.print(f"  {'why' if i == 0 else '':<9}  {escape(reason)}")
    for warning in plan.warnings:
        out.print(f"  [yellow]warning[/]    {escape(warning)}")
    if plan.build_from_source:
        out.print("  To use the GPU instead:")
        for line in plan.build_from_source.splitlines():
            out.print(f"    {escape(line)}")


def _show_result(out: Console, result: InstallResult) -> None:
    from rich.markup import escape

    changes = ", ".join(c.describe() for c in result.changes) or "none"
    if result.outcome == "installed":
        v = result.verification
        facts = ""
        if v is not None:
            features = v.features or {}
            facts = (
                f": import mxnet {v.mxnet_version}, numpy {v.numpy_version}, "
                f"MKLDNN {'on' if features.get('MKLDNN') else 'off'}, "
                f"CUDA {'on' if features.get('CUDA') else 'off'}"
                + (f", {v.num_gpus} GPU(s), gpu(0) operation ok" if result.plan.gpu else "")
                + ", tiny operation ok"
            )
        out.print(f"[green]Installed[/] {escape(result.plan.requirement)}{escape(facts)}")
        out.print(f"Changes: {escape(changes)}")
        return
    out.print(f"[red]Failed[/]: {escape(result.failure or '')}")
    if result.outcome == "rolled-back":
        back = ", ".join(c.describe() for c in result.rollback_changes) or "nothing to undo"
        out.print(f"[yellow]Rolled back[/]: the environment is as it was before ({escape(back)}).")
    else:
        out.print(f"[red]Rollback incomplete[/]: {escape(result.rollback_problem or '')}")


if TYPE_CHECKING:
    from rich.console import Console
