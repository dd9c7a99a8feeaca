"""Carry a plan out as one transaction: kept when verified, else put back -- also
when a signal stops it, and by the next run when this one is killed.

lock the target -> resolve the complete install -> keep a way back (a wheel of every
distribution that will change, in the journal's kit) -> write the journal -> uninstall
the other flavors -> pip install -> verify in a fresh process -> remove the journal.
Anything failing or interrupting after the journal is written rolls back
(:mod:`.restore`), with SIGINT, SIGTERM and SIGHUP ignored until it ends; the
journal and kit stay when the rollback is incomplete, for ``--restore``."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kmx_tune import fsio
from kmx_tune.dists import Distribution
from kmx_tune.errors import KmxError
from kmx_tune.install import disk, journal
from kmx_tune.install.changes import PackageChange, describe, diff
from kmx_tune.install.journal import Journal, restore_command
from kmx_tune.install.pip import PipOptions
from kmx_tune.install.pipstep import list_installed, run_step
from kmx_tune.install.plan import InstallPlan
from kmx_tune.install.restore import PutBack, put_back
from kmx_tune.install.signals import Guard, Interrupted, guarded
from kmx_tune.install.verify import Verification, verify
from kmx_tune.install.wayback import changed_by, keep_a_way_back, resolve_install
from kmx_tune.target import Target, TargetInfo

__all__ = ["InstallInterrupted", "InstallResult", "PackageChange", "diff", "execute", "quiet"]


@dataclass(frozen=True)
class InstallResult:
    plan: InstallPlan
    outcome: str  # "installed" | "rolled-back" | "rollback-failed" | "declined"
    failure: str | None  # why the new flavor was not kept
    verification: Verification | None
    changes: tuple[PackageChange, ...]  # the target now, against before
    rollback_changes: tuple[PackageChange, ...] = ()  # what the rollback did
    rollback_problem: str | None = None
    kit: str | None = None  # the way back, kept because the rollback is incomplete
    restore: str | None = None  # the command that finishes the rollback
    by_hand: tuple[str, ...] = ()  # or these pip commands
    cleaned: tuple[str, ...] = ()  # pip leftovers the rollback removed from disk

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "installed" else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/install-result/1",
            "outcome": self.outcome,
            "failure": self.failure,
            "plan": self.plan.to_json(),
            "verification": None if self.verification is None else self.verification.to_json(),
            "changes": [c.to_json() for c in self.changes],
            "rollback": {
                "changes": [c.to_json() for c in self.rollback_changes],
                "problem": self.rollback_problem,
                "kit": self.kit,
                "restore": self.restore,
                "by_hand": list(self.by_hand),
                "removed_from_disk": list(self.cleaned),
            }
            if self.outcome not in ("installed", "declined")
            else None,
        }


class InstallInterrupted(KmxError):
    """A signal stopped the install; what was changed has been put back (or the way
    back is kept). Exit status 128 + the signal number."""

    def __init__(self, message: str, signum: int, details: dict[str, object]) -> None:
        super().__init__(message, details=details)
        self.exit_code = 128 + signum


class InterruptedInstallFound(KmxError):
    """An earlier run was killed after it changed the target: restore first."""


Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def never_raises(log: Log) -> Log:
    """*log*, made unable to stop the work: a message that cannot be printed (a
    closed terminal, a broken pipe, a rendering bug) is dropped, never raised."""

    def safe_log(line: str) -> None:
        # printing must never decide whether a rollback runs
        with contextlib.suppress(Exception):
            log(line)

    return safe_log


@dataclass
class _Run:
    """The state of one transaction as it goes."""

    plan: InstallPlan
    pip: PipOptions
    out: IO[str] | None
    log: Log
    journal: Journal | None = None
    failure: str | None = None
    verification: Verification | None = None

    def record(self, step: str, pid: int | None = None) -> None:
        """Save the journal at *step* (with the pip process running now, if any)."""
        assert self.journal is not None
        child = None if pid is None else (pid, journal.process_start(pid))
        try:
            self.journal = self.journal.at(step, child)
        except OSError as exc:  # a full disk: stop here and roll back
            raise KmxError(
                f"cannot update the install journal in {self.journal.folder} "
                f"({exc.strerror or exc})"
            ) from None


def check_no_interrupted_install(prefix: str, python: str, pip: PipOptions | None) -> None:
    """Raise when an earlier install on this target was interrupted (restore first) or
    another one is running now."""
    found = journal.find(prefix)
    if found is None:
        return
    if found.running:
        raise journal.Busy(
            f"another kmx-tune install-mxnet is changing {python} now "
            f"(started {found.journal.started}); wait until it ends, then run this again"
        )
    raise InterruptedInstallFound(
        journal.interrupted_message(found.journal, python, pip),
        details={"journal": str(found.journal.folder / journal.JOURNAL)},
    )


def execute(
    plan: InstallPlan,
    pip: PipOptions,
    facts: TargetInfo | None = None,
    *,
    out: IO[str] | None = None,
    log: Log = quiet,
) -> InstallResult:
    """Carry the plan out. pip's output goes to *out* as it comes (and is captured);
    *log* gets one line per step. Returns installed / rolled-back / rollback-failed;
    raises KmxError when it stops before anything changed, and InstallInterrupted
    when a signal stopped it (after the rollback)."""
    log = never_raises(log)
    facts = facts if facts is not None else Target(plan.python).facts()
    prefix = os.path.realpath(facts.prefix)
    run = _Run(plan, pip, out, log)
    with journal.locked(prefix, plan.python) as folder, Guard() as guard:
        found = journal.load(folder)
        if found is not None and found.step != journal.VERIFIED:
            raise InterruptedInstallFound(journal.interrupted_message(found, plan.python, pip))
        _, error = guarded(guard, lambda: _prepare(run, facts, prefix, folder))
        if error is not None:
            journal.discard(folder)  # nothing has changed yet
            if isinstance(error, Interrupted):
                raise InstallInterrupted(
                    f"interrupted by {error.name} before anything changed; nothing changed",
                    error.signum,
                    {"outcome": "nothing-changed"},
                ) from None
            raise error
        _, error = guarded(guard, lambda: _change(run))
        if error is None and run.failure is None:
            journal.discard(folder)
            return InstallResult(
                plan,
                "installed",
                None,
                run.verification,
                diff(run.journal.before, _now(plan)),  # type: ignore[union-attr]
            )
        # From here on signals are only noted: the rollback runs to its end.
        if isinstance(error, Interrupted):
            log(f"Interrupted by {error.name}: rolling back (signals are ignored until it ends)")
        elif error is not None and not isinstance(error, KmxError):
            run.failure = f"{type(error).__name__}: {error}"
        elif error is not None:
            run.failure = str(error)
        if run.failure is not None:
            log(f"Failed: {run.failure}")
            log("Rolling back to what was installed before")
        result = _roll_back(run, folder)
    if isinstance(error, Interrupted):
        raise _interrupted(error, result) from None
    if error is not None and not isinstance(error, KmxError):
        raise error  # a bug: the environment is back (or the kit kept); show it
    return result


def _now(plan: InstallPlan) -> dict[str, Distribution]:
    try:
        return list_installed(plan.python, own_session=True)
    except KmxError:
        return {}


def _prepare(run: _Run, facts: TargetInfo, prefix: str, folder: Path) -> None:
    """Everything before the first change: nothing here changes the target."""
    plan, pip, log = run.plan, run.pip, run.log
    if folder.exists():  # a kit without a journal: a run killed before it changed anything
        shutil.rmtree(folder, ignore_errors=True)
    before = list_installed(plan.python)
    if plan.resolution is None or not plan.resolution.ok:
        log("Resolving the complete install with pip (what it would add, replace or remove)")
    resolution = resolve_install(plan, facts, pip)
    changed = changed_by(plan, before, resolution)
    try:
        _keep_the_way_back(run, prefix, folder, before, changed)
    except OSError as exc:
        raise KmxError(
            f"nothing changed: cannot write the way back into {folder} "
            f"({exc.strerror or exc}); free some space there, or set KMX_TUNE_CACHE_DIR to "
            "a folder on another disk"
        ) from None


def _keep_the_way_back(
    run: _Run,
    prefix: str,
    folder: Path,
    before: dict[str, Distribution],
    changed: list[Distribution],
) -> None:
    """The kit (a wheel of each *changed* distribution), the disk snapshot and the
    journal, durable before the first change."""
    plan, pip, log = run.plan, run.pip, run.log
    folder.mkdir(parents=True, exist_ok=True)
    fsio.fsync_dir(folder.parent)  # the folder itself survives a power cut
    kept: tuple[journal.KeptWheel, ...] = ()
    if changed:
        log(
            f"Keeping a way back in {folder / journal.WHEELS}: "
            + ", ".join(d.requirement for d in changed)
        )
        kept = keep_a_way_back(plan, changed, folder / journal.WHEELS, pip)
    run.journal = Journal(
        python=plan.python,
        prefix=prefix,
        started=journal.now_utc(),
        since=time.time() - 2.0,  # file systems with coarse timestamps
        pid=os.getpid(),
        requirements=tuple(plan.requirements),
        uninstall=tuple(d.requirement for d in plan.uninstall),
        before=before,
        way_back=kept,
        pip=pip,
        disk=disk.snapshot(before, changed),
        step="uninstalling" if plan.uninstall else "installing",
        folder=folder,
    )
    run.journal.save()


def _change(run: _Run) -> None:
    """Uninstall the other flavors, install, verify. Sets run.failure on a failure."""
    plan, pip, out, log = run.plan, run.pip, run.out, run.log
    if plan.uninstall:
        log("Uninstalling " + ", ".join(d.requirement for d in plan.uninstall))
        step = run_step(
            plan.python,
            ["uninstall", "--yes", *(d.name for d in plan.uninstall)],
            out,
            on_start=lambda pid: run.record("uninstalling", pid),
        )
        if not step.ok:
            run.failure = f"pip uninstall failed: {step.error_line()}"
            return
    log("Installing " + " ".join(plan.requirements))
    step = run_step(
        plan.python,
        ["install", "--upgrade-strategy", "only-if-needed", *plan.requirements, *pip.args()],
        out,
        on_start=lambda pid: run.record("installing", pid),
    )
    if not step.ok:
        run.failure = f"pip install failed: {step.error_line()}"
        return
    run.record("verifying")
    log("Verifying in a fresh process: import mxnet, Features, a tiny operation")
    run.verification = verify(plan, list_installed(plan.python))
    if not run.verification.ok:
        run.failure = "verification failed: " + "; ".join(run.verification.problems)
        return
    # killed from here on, the install is complete: the next run just removes the journal
    run.record(journal.VERIFIED)


def _roll_back(run: _Run, folder: Path) -> InstallResult:
    plan = run.plan
    assert run.journal is not None
    with contextlib.suppress(OSError):  # the journal as it was still says what to restore
        run.record("rolling-back")
    back: PutBack = put_back(
        run.journal,
        plan.python,
        out=run.out,
        log=run.log,
        on_child=lambda pid: run.record("rolling-back", pid),
    )
    if back.complete:
        journal.discard(folder)
        return InstallResult(
            plan,
            "rolled-back",
            run.failure,
            run.verification,
            diff(run.journal.before, _now(plan)),
            back.changes,
            None,
            cleaned=back.removed,
        )
    return InstallResult(
        plan,
        "rollback-failed",
        run.failure,
        run.verification,
        back.left,
        back.changes,
        back.problem(),
        kit=str(run.journal.kit),
        restore=restore_command(plan.python, run.pip),
        by_hand=back.by_hand,
        cleaned=back.removed,
    )


def _interrupted(signal: Interrupted, result: InstallResult) -> InstallInterrupted:
    details: dict[str, object] = {
        "signal": signal.name,
        "outcome": result.outcome,
        "rollback": (result.to_json().get("rollback") or {}),
    }
    if result.outcome == "rolled-back":
        back = describe(result.rollback_changes) or "nothing to undo"
        message = (
            f"interrupted by {signal.name}: rolled back; the environment is as it was "
            f"before ({back})"
        )
    else:
        message = (
            f"interrupted by {signal.name}, and the rollback is incomplete "
            f"({result.rollback_problem}); the way back is kept in {result.kit}: "
            f"finish it with `{result.restore}`"
        )
    return InstallInterrupted(message, signal.signum, details)
