"""``kmx-tune install-mxnet`` from the request to the result: plan for the hardware and
the target, check that pip serves it, then either stop (a dry run), ask, or carry it out.
The command module only parses options, renders and asks the question."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from kmx_tune.errors import UsageError
from kmx_tune.install.availability import check_available
from kmx_tune.install.pip import PipOptions
from kmx_tune.install.plan import InstallPlan, plan_install
from kmx_tune.install.transaction import InstallResult, Log, execute, quiet

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
    UsageError (and friends) before anything changes."""
    facts = target.facts()
    if not facts.has_pip:
        raise UsageError(
            f"--python {target.python}: has no pip; add it with `{target.python} -m ensurepip` "
            "and run this again"
        )
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
    return execute(plan, pip, out=out, log=log)
