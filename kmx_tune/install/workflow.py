"""``kmx-tune install-mxnet`` from the request to the result: plan for the hardware and
the target, check that pip serves it, then either stop (a dry run), ask, or carry it out;
and ``--restore``, which puts back what an interrupted install changed.
The command module only parses options, renders and asks the question."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.install import journal
from kmx_tune.install.availability import check_available
from kmx_tune.install.pip import PipOptions
from kmx_tune.install.plan import InstallPlan, plan_install
from kmx_tune.install.restore import PutBack, put_back
from kmx_tune.install.signals import Guard
from kmx_tune.install.transaction import (
    InstallResult,
    Log,
    check_no_interrupted_install,
    execute,
    never_raises,
    quiet,
)

if TYPE_CHECKING:
    from kmx_tune.hardware import HardwareProfile
    from kmx_tune.target import Target


@dataclass(frozen=True)
class Request:
    """What the user asked for beyond the advice."""

    flavor: str | None = None  # --flavor
    version: str | None = None  # --version
    cpu_only: bool = False  # --cpu
    cuda_libs: str = "auto"  # --cuda-libs pip|system


@dataclass(frozen=True)
class PlanResult:
    """A dry run: the plan, checked with pip; nothing changed."""

    plan: InstallPlan
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"schema": "kmx-tune/install-plan/1", "dry_run": True, **self.plan.to_json()}


def prepare(
    target: Target, hardware: HardwareProfile, request: Request, pip: PipOptions
) -> InstallPlan:
    """The plan for *target* on *hardware*, checked against what pip serves. Raises
    UsageError (and friends) before anything changes; KmxError when an earlier
    install on this target was interrupted and must be restored first."""
    facts = target.facts()
    if not facts.has_pip:
        raise UsageError(
            f"--python {target.python}: has no pip; add it with `{target.python} -m ensurepip` "
            "and run this again"
        )
    check_no_interrupted_install(facts.prefix, target.python, pip)
    plan = plan_install(
        facts,
        hardware,
        flavor=request.flavor,
        version=request.version,
        cpu_only=request.cpu_only,
        cuda_libs=request.cuda_libs,
    )
    return check_available(plan, pip)


def install_mxnet(
    target: Target,
    hardware: HardwareProfile,
    request: Request,
    pip: PipOptions,
    *,
    dry_run: bool = False,
    confirm: Callable[[InstallPlan], bool] = lambda plan: True,
    out: IO[str] | None = None,
    log: Log = quiet,
) -> PlanResult | InstallResult:
    """Plan, check, and (unless *dry_run*, and once *confirm* says yes) install,
    verify, and keep or roll back. pip's output goes to *out* (captured when None)."""
    plan = prepare(target, hardware, request, pip)
    if dry_run:
        return PlanResult(plan)
    if not confirm(plan):
        return InstallResult(plan, "declined", None, None, ())
    return execute(plan, pip, target.facts(), out=out, log=log)


@dataclass(frozen=True)
class RestoreResult:
    """What ``install-mxnet --restore`` did."""

    python: str
    outcome: str  # "restored" | "partly-restored" | "restore-failed" | "nothing-to-restore"
    interrupted: str | None = None  # what the interrupted run was doing
    put_back: PutBack | None = None
    kit: str | None = None  # kept: running --restore again can still help
    restore: str | None = None  # that command

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome in ("restored", "nothing-to-restore") else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/install-restore/1",
            "python": self.python,
            "outcome": self.outcome,
            "interrupted": self.interrupted,
            "restore": None if self.put_back is None else self.put_back.to_json(),
            "kit": self.kit,
            "retry": self.restore,
        }


def restore(
    target: Target,
    pip: PipOptions | None = None,
    *,
    out: IO[str] | None = None,
    log: Log = quiet,
) -> RestoreResult:
    """Put back what an interrupted ``install-mxnet`` changed in *target*, from its
    journal: what can be restored, even when a wheel is missing. The journal goes
    once nothing more can be done (kept when running this again could help). Signals
    are ignored while pip changes the target. *pip*: index options for what the kit
    does not hold (default: those the interrupted run had)."""
    log = never_raises(log)
    facts = target.facts()
    prefix = os.path.realpath(facts.prefix)
    with journal.locked(prefix, target.python) as folder, Guard():
        found = journal.load(folder)
        if found is None or found.step == journal.VERIFIED:
            if folder.exists():  # that run changed nothing, or finished its install
                shutil.rmtree(folder, ignore_errors=True)
            return RestoreResult(target.python, "nothing-to-restore")
        if found.child is not None and journal.process_alive(*found.child):
            raise KmxError(
                f"the pip that the interrupted install started (pid {found.child[0]}) is still "
                f"changing {target.python}; wait until it ends, then run this again"
            )
        what = found.describe()
        log(f"Restoring {target.python} as it was before the interrupted install ({what})")
        current = found

        def record(pid: int) -> None:
            nonlocal current
            current = current.at("restoring", (pid, journal.process_start(pid)))

        back = put_back(
            found, target.python, pip=pip, out=out, log=log, label="Restore", on_child=record
        )
        if back.complete:
            journal.discard(folder)
            return RestoreResult(target.python, "restored", found.describe(), back)
        if not back.retry_helps:
            # what is left has no wheel in the kit: the commands say how to get it
            journal.discard(folder)
            return RestoreResult(target.python, "partly-restored", found.describe(), back)
        return RestoreResult(
            target.python,
            "restore-failed",
            found.describe(),
            back,
            kit=str(found.kit),
            restore=journal.restore_command(target.python, pip or found.pip),
        )
