"""``kmx-tune install-mxnet``: the right MXNet flavor, verified, or the old state back."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kmx_tune.options import (
    dry_run_option,
    find_target,
    hardware_option,
    json_option,
    python_option,
)

if TYPE_CHECKING:
    from rich.console import Console

    from kmx_tune.install.plan import InstallPlan
    from kmx_tune.install.transaction import InstallResult
    from kmx_tune.install.verify import Verification
    from kmx_tune.install.workflow import RestoreResult


@click.command("install-mxnet")
@python_option
@click.option(
    "--flavor", metavar="NAME", help="Install this package instead of the advice, e.g. mxnet-cu117."
)
@click.option(
    "--version", "version", metavar="V", help="Install this release instead of the newest."
)
@click.option("--cpu", is_flag=True, help="Pick a CPU flavor even when there is a usable GPU.")
@click.option(
    "--cuda-libs",
    type=click.Choice(["pip", "system"]),
    help="Where a CUDA flavor's CUDA/cuDNN/NCCL libraries come from (default: pip where "
    "NVIDIA publishes them, else the system).",
)
@hardware_option
@dry_run_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask before changing the environment.")
@json_option
@click.option("--index-url", metavar="URL", help="Passed to pip.")
@click.option("--extra-index-url", metavar="URL", multiple=True, help="Passed to pip.")
@click.option(
    "--find-links", metavar="DIR", multiple=True, help="Passed to pip: a folder of wheels."
)
@click.option("--no-index", is_flag=True, help="Passed to pip: use only --find-links.")
@click.option(
    "--restore",
    is_flag=True,
    help="Put back what an interrupted install-mxnet changed in this Python, from its journal.",
)
def install_mxnet(
    python: str | None,
    flavor: str | None,
    version: str | None,
    cpu: bool,
    cuda_libs: str | None,
    hardware_file: str | None,
    dry_run: bool,
    yes: bool,
    as_json: bool,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    find_links: tuple[str, ...],
    no_index: bool,
    restore: bool,
) -> None:
    """Install the right MXNet flavor into a Python, verify it, roll back on failure.

    Plans from this machine's CPU and GPUs (or --hardware FILE): every other MXNet
    distribution is uninstalled first (all flavors write the same `mxnet` module),
    then PACKAGE==VERSION and numpy<1.24 are installed with the target's own pip.
    A fresh process then imports mxnet, checks its build features and runs a tiny
    operation (on gpu(0) for a GPU flavor). If pip or that check fails, exactly
    what was installed before is put back. Your pip configuration (index, proxy,
    certificates) applies; the index options are passed through to pip.

    The change is a transaction: before anything changes, pip resolves the whole
    install and a wheel of every distribution it will change is kept, with a
    journal, in kmx-tune's cache folder. Ctrl-C, SIGTERM or a closed terminal roll
    back (and are ignored while the rollback runs); after a kill -9 or a power cut,
    the next install-mxnet or doctor says so, and --restore puts the environment
    back as the journal says it was (no question asked: that is what it is for).

    Exit status: 0 installed (or a dry run, or restored), 1 failed and rolled back
    (or the question was answered no, or an interrupted install must be restored
    first), 2 bad input, 128+N stopped by signal N (after the rollback).

    \b
    Example:
      kmx-tune install-mxnet --dry-run
      kmx-tune install-mxnet --python ~/venvs/keras/bin/python --yes
      kmx-tune install-mxnet --flavor mxnet-native --version 1.8.0.post0
      kmx-tune install-mxnet --no-index --find-links ~/wheels --yes
      kmx-tune install-mxnet --python ~/venvs/keras/bin/python --restore
    """
    from kmx_tune.errors import UsageError
    from kmx_tune.hardware import get_hardware
    from kmx_tune.install.pip import PipOptions
    from kmx_tune.install.workflow import PlanResult, Request, install_mxnet
    from kmx_tune.install.workflow import restore as restore_target
    from kmx_tune.render import console, finish, plain

    out = console()
    err = console(stderr=True)
    pip = PipOptions(index_url, extra_index_url, find_links, no_index)

    def confirm(plan: InstallPlan) -> bool:
        if not as_json:
            _show_plan(out, plan)
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(
                "nothing changed: add --yes to install without a question "
                "(or --dry-run to see the plan)"
            )
        return click.confirm("Go ahead?", default=False, err=True)

    def log(line: str) -> None:
        err.print(f"[bold]>[/] {plain(line)}")

    if restore:
        given = [
            name
            for name, value in (
                ("--flavor", flavor),
                ("--version", version),
                ("--cpu", cpu),
                ("--cuda-libs", cuda_libs),
                ("--hardware", hardware_file),
                ("--dry-run", dry_run),
            )
            if value
        ]
        if given:
            raise UsageError(
                f"--restore puts back what was there before; it takes no {', '.join(given)}"
            )
        restored = restore_target(
            find_target(python),
            pip if pip.args() else None,
            out=None if as_json else sys.stderr,
            log=log,
        )
        finish(restored, as_json, lambda r: _show_restore(out, r))

    result = install_mxnet(
        find_target(python),
        get_hardware(hardware_file),
        Request(flavor, version, cpu, cuda_libs or "auto"),
        pip,
        dry_run=dry_run,
        confirm=confirm,
        out=None if as_json else sys.stderr,
        log=log,
    )
    if isinstance(result, PlanResult):
        finish(result, as_json, lambda r: _show_dry_run(out, r.plan))
    finish(result, as_json, lambda r: _show_result(out, err, r))


def _show_dry_run(out: Console, plan: InstallPlan) -> None:
    _show_plan(out, plan)
    out.print("Dry run: nothing changed.")


def _show_plan(out: Console, plan: InstallPlan) -> None:
    from kmx_tune.render import plain

    out.print(
        f"Plan for {plain(plan.python)} (Python {plan.python_version}, {plan.platform})",
        style="bold",
    )
    if plan.uninstall:
        gone = ", ".join(f"{d.name} {d.version}" for d in plan.uninstall)
        out.print(f"  uninstall  {plain(gone)}  (all flavors write the same mxnet module)")
    out.print(f"  install    {plain(' '.join(plan.requirements))}")
    if [d.requirement for d in plan.installed] == [plan.requirement]:
        out.print(f"  note       {plain(plan.requirement)} is there already: this checks it again")
    for i, reason in enumerate(plan.reasons):
        out.print(f"  {'why' if i == 0 else '':<9}  {plain(reason)}")
    for warning in plan.warnings:
        out.print(f"  [yellow]warning[/]    {plain(warning)}")
    if plan.build_from_source:
        out.print("  To use the GPU instead:")
        for line in plan.build_from_source.splitlines():
            out.print(f"    {plain(line)}")


def _show_result(out: Console, err: Console, result: InstallResult) -> None:
    from kmx_tune.render import plain

    if result.outcome == "declined":
        err.print("Nothing changed.")
        return
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
        out.print(f"[green]Installed[/] {plain(result.plan.requirement)}{plain(facts)}")
        _show_libraries(out, v)
        out.print(f"Changes: {plain(changes)}")
        return
    out.print(f"[red]Failed[/]: {plain(result.failure or '')}")
    _show_libraries(out, result.verification)
    if result.outcome == "rolled-back":
        back = ", ".join(c.describe() for c in result.rollback_changes) or "nothing to undo"
        out.print(f"[yellow]Rolled back[/]: the environment is as it was before ({plain(back)}).")
    else:
        out.print(f"[red]Rollback incomplete[/]: {plain(result.rollback_problem or '')}")
        out.print(f"The way back is kept in {plain(result.kit or '')}; finish the rollback with:")
        out.print(f"  {plain(result.restore or '')}")
        if result.by_hand:
            out.print("or by hand:")
            for command in result.by_hand:
                out.print(f"  {plain(command)}")


def _show_restore(out: Console, result: RestoreResult) -> None:
    from kmx_tune.render import plain

    if result.outcome == "nothing-to-restore":
        out.print(
            f"Nothing to restore: no interrupted install-mxnet left a journal for "
            f"{plain(result.python)}."
        )
        return
    back = result.put_back
    assert back is not None
    done = ", ".join(c.describe() for c in back.changes) or "nothing needed changing"
    if result.outcome == "restored":
        out.print(
            f"[green]Restored[/]: {plain(result.python)} is as it was before the interrupted "
            f"install ({plain(done)})."
        )
        return
    out.print(f"[red]Not everything is back[/]: {plain(back.problem() or '')}")
    if result.outcome == "restore-failed":
        out.print(
            f"The way back is kept in {plain(result.kit or '')}; once the cause is fixed, "
            "run again:"
        )
        out.print(f"  {plain(result.restore or '')}")
    if back.by_hand:
        out.print(
            "By hand:" if result.outcome == "restore-failed" else "Put the rest back by hand:"
        )
        for command in back.by_hand:
            out.print(f"  {plain(command)}")


def _show_libraries(out: Console, v: Verification | None) -> None:
    """Where the check's process loaded each CUDA library from (GPU flavors)."""
    from kmx_tune.render import plain

    if v is None:
        return
    for name, path in sorted(v.cuda_libraries.items()):
        version = v.cuda_library_versions.get(name)
        out.print(
            f"  loaded {plain(name)} from {plain(path)}"
            + (f" ({plain(version)})" if version else "")
        )
