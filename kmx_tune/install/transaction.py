"""Carry a plan out as one change that is either kept (verified) or undone.

keep a way back -> uninstall the other flavors -> pip install -> verify in a fresh
process -> roll back if anything failed."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

from kmx_tune.dists import Distribution, is_mxnet_distribution, normalize
from kmx_tune.errors import KmxError
from kmx_tune.install.availability import download
from kmx_tune.install.pip import PipOptions, pip_list, run_pip
from kmx_tune.install.plan import InstallPlan
from kmx_tune.install.verify import Verification, verify

# Never uninstalled by a rollback, whatever happened to them.
_PACKAGING_TOOLS = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class PackageChange:
    name: str
    before: str | None  # None: newly installed
    after: str | None  # None: removed

    def describe(self) -> str:
        if self.before is None:
            return f"+ {self.name} {self.after}"
        if self.after is None:
            return f"- {self.name} {self.before}"
        return f"~ {self.name} {self.before} -> {self.after}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "before": self.before, "after": self.after}


def diff(
    before: Mapping[str, Distribution], after: Mapping[str, Distribution]
) -> tuple[PackageChange, ...]:
    changes = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b is not None and a is not None and b.version == a.version:
            continue
        name = (a or b).name  # type: ignore[union-attr]  # one of them is set
        changes.append(PackageChange(name, b.version if b else None, a.version if a else None))
    return tuple(changes)


@dataclass(frozen=True)
class InstallResult:
    plan: InstallPlan
    outcome: str  # "installed" | "rolled-back" | "rollback-failed" | "declined"
    failure: str | None  # why the new flavor was not kept
    verification: Verification | None
    changes: tuple[PackageChange, ...]  # the target now, against before
    rollback_changes: tuple[PackageChange, ...] = ()  # what the rollback did
    rollback_problem: str | None = None

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
            }
            if self.outcome not in ("installed", "declined")
            else None,
        }


Log = Callable[[str], None]


def quiet(_: str) -> None:
    pass


def execute(
    plan: InstallPlan,
    pip: PipOptions,
    *,
    out: IO[str] | None = None,
    log: Log = quiet,
) -> InstallResult:
    """Carry the plan out. pip's output goes to *out* (captured when None); *log*
    gets one line per step. Returns installed / rolled-back / rollback-failed; raises
    KmxError only when it fails before anything changed."""
    before = pip_list(plan.python)
    with tempfile.TemporaryDirectory(prefix="kmx-tune-rollback-") as kit:
        _keep_a_way_back(plan, before, kit, pip, out, log)
        failure: str | None = None
        verification: Verification | None = None
        try:
            failure = _apply(plan, pip, out, log)
            if failure is None:
                log("Verifying in a fresh process: import mxnet, Features, a tiny operation")
                verification = verify(plan, pip_list(plan.python))
                if not verification.ok:
                    failure = "verification failed: " + "; ".join(verification.problems)
        except BaseException:  # Ctrl-C in the middle of pip: put the old state back first
            log("Interrupted: rolling back")
            _roll_back(plan, before, kit, pip, out, log)
            raise
        if failure is None:
            return InstallResult(
                plan, "installed", None, verification, diff(before, pip_list(plan.python))
            )
        log(f"Failed: {failure}")
        log("Rolling back to what was installed before")
        rollback_changes, problem = _roll_back(plan, before, kit, pip, out, log)
        now = pip_list(plan.python)
        return InstallResult(
            plan,
            "rolled-back" if problem is None else "rollback-failed",
            failure,
            verification,
            diff(before, now),
            rollback_changes,
            problem,
        )


def _keep_a_way_back(
    plan: InstallPlan,
    before: Mapping[str, Distribution],
    kit: str,
    pip: PipOptions,
    out: IO[str] | None,
    log: Log,
) -> None:
    """Fetch the wheels of the MXNet distributions and numpy there now (pip's cache
    makes this quick), so that a rollback can reinstall exactly them even if the
    index is gone by then. Refuse, changing nothing, when pip cannot fetch one."""
    keep = [d for key, d in before.items() if is_mxnet_distribution(key) or key == "numpy"]
    if not keep:
        return
    log("Keeping a way back: " + ", ".join(d.requirement for d in keep))
    for dist in keep:
        run = download(plan.python, dist.requirement, kit, pip)
        if not run.ok:
            raise KmxError(
                f"nothing changed: pip cannot fetch {dist.requirement} again "
                f"({run.error_line()}), so a failed install could not be rolled back; put "
                f"its wheel in a folder and add --find-links DIR, or uninstall it first "
                f"({plan.python} -m pip uninstall {dist.name})"
            )


def _apply(plan: InstallPlan, pip: PipOptions, out: IO[str] | None, log: Log) -> str | None:
    """Uninstall the other flavors, then install. Returns what failed, or None."""
    if plan.uninstall:
        log("Uninstalling " + ", ".join(d.requirement for d in plan.uninstall))
        run = run_pip(plan.python, ["uninstall", "--yes", *(d.name for d in plan.uninstall)], out)
        if not run.ok:
            return f"pip uninstall failed: {run.error_line()}"
    log("Installing " + " ".join(plan.requirements))
    run = run_pip(
        plan.python,
        ["install", "--upgrade-strategy", "only-if-needed", *plan.requirements, *pip.args()],
        out,
    )
    if not run.ok:
        return f"pip install failed: {run.error_line()}"
    return None


def _roll_back(
    plan: InstallPlan,
    before: Mapping[str, Distribution],
    kit: str,
    pip: PipOptions,
    out: IO[str] | None,
    log: Log,
) -> tuple[tuple[PackageChange, ...], str | None]:
    """Put back exactly the distributions (names and versions) that were there
    before: remove what is new, reinstall what went or changed, without letting pip
    resolve anything else (--no-deps). Returns what it did and a problem, if any."""
    try:
        now = pip_list(plan.python)
    except KmxError as exc:
        return (), str(exc)
    changes = diff(before, now)
    remove = [
        c.name for c in changes if c.before is None and normalize(c.name) not in _PACKAGING_TOOLS
    ]
    restore = [
        before[normalize(c.name)].requirement
        for c in changes
        if c.before is not None and normalize(c.name) not in _PACKAGING_TOOLS
    ]
    problems: list[str] = []
    if remove:
        log("Rollback: uninstalling " + ", ".join(remove))
        run = run_pip(plan.python, ["uninstall", "--yes", *remove], out)
        if not run.ok:
            problems.append(f"pip uninstall failed: {run.error_line()}")
    if restore:
        log("Rollback: reinstalling " + ", ".join(restore))
        run = run_pip(
            plan.python,
            ["install", "--no-deps", "--find-links", kit, *restore, *pip.args()],
            out,
        )
        if not run.ok:
            problems.append(f"pip install failed: {run.error_line()}")
    final = pip_list(plan.python)
    left = [c for c in diff(before, final) if normalize(c.name) not in _PACKAGING_TOOLS]
    if left:
        problems.append("still different from before: " + ", ".join(c.describe() for c in left))
    done = diff(now, final)
    if problems:
        wanted = " ".join(
            d.requirement
            for key, d in before.items()
            if is_mxnet_distribution(key) or key == "numpy"
        )
        return done, "; ".join(problems) + (
            f"; to restore by hand: {plan.python} -m pip install {wanted}" if wanted else ""
        )
    return done, None
