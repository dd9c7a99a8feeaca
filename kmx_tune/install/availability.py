"""Is the plan installable? Asked of the target's own pip before anything changes: the
package is served, and the complete install resolves (the first candidate that does)."""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import replace

from kmx_tune import versions
from kmx_tune.errors import KmxError
from kmx_tune.install import cuda_wiring
from kmx_tune.install.pip import (
    NOT_FOUND_MARKERS,
    NotServedError,
    OfflineError,
    PipOptions,
    PipRun,
    offline_hint,
    offline_reason,
    pip_upgrade_args,
    run_pip,
)
from kmx_tune.install.plan import InstallPlan, wiring_requirement
from kmx_tune.install.resolve import Resolution, TargetTags, resolve

# pip older than 21.2 has no `pip index`
_NO_INDEX_COMMAND = ('unknown command "index"', "no such command", "ERROR: unknown command")


def served_versions(python: str, package: str, pip: PipOptions) -> tuple[str, ...] | None:
    """The versions of *package* that pip would install into *python* (its Python and
    platform), newest first, from ``pip index versions``. None when this pip has no
    ``index`` command. Raises OfflineError / NotServedError."""
    # -vv: with retries off, pip logs why it could not fetch an index page only at debug level
    run = run_pip(python, ["index", "versions", "-vv", package, *pip.args()])
    if not run.ok and any(marker in run.output for marker in _NO_INDEX_COMMAND):
        return None
    offline = offline_reason(run.output)
    for line in run.output.splitlines():
        if line.strip().startswith("Available versions:"):
            versions = line.split(":", 1)[1]
            return tuple(v.strip() for v in versions.split(",") if v.strip())
    if offline:
        raise OfflineError(f"offline: pip cannot reach the package index ({offline})")
    if any(marker in run.output for marker in NOT_FOUND_MARKERS):
        return ()
    raise KmxError(f"`pip index versions {package}` failed: {run.error_line()}")


def download(python: str, requirement: str, dest: str, pip: PipOptions) -> PipRun:
    return run_pip(
        python,
        [
            "download",
            "-vv",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            dest,
            requirement,
            *pip.args(),
        ],
    )


# How many of the advisor's candidates to resolve before giving up: they fail for the
# same reasons (offline, a folder without the wheels), and each try costs pip seconds.
MAX_TRIES = 4


def check_available(plan: InstallPlan, pip: PipOptions) -> InstallPlan:
    """The plan (or the first of its fallbacks) whose complete install resolves for the
    target's Python and platform: the package's own requirements, numpy's bound and the
    CUDA libraries, with the target's pip (``--dry-run --report``; kmx-tune's pip with
    the target's tags for pips older than 22.2). Returns it with its resolution and a
    reason for each candidate skipped. Raises OfflineError or NotServedError with what
    to do, before anything changes."""
    skipped: list[str] = []
    first_error: KmxError | None = None
    for candidate in (plan, *plan.alternatives)[:MAX_TRIES]:
        try:
            checked = _check_one(candidate, pip)
        except OfflineError:
            raise
        except NotServedError as exc:
            first_error = first_error or exc
            skipped.append(f"{candidate.requirement} was skipped: {exc}")
            continue
        if skipped:
            checked = replace(
                checked,
                reasons=(*checked.reasons, *skipped),
                warnings=(
                    *checked.warnings,
                    f"the advice's first choice {plan.requirement} does not install here; "
                    f"{checked.requirement} is the next that does",
                ),
            )
        return replace(checked, alternatives=())
    assert first_error is not None
    raise first_error


def with_wiring_wheel(plan: InstallPlan) -> InstallPlan:
    """Build kmx-tune's CUDA library wiring for *plan* (into kmx-tune's cache folder)
    and put the wheel's path in the requirements in place of its name."""
    requirement = wiring_requirement(plan)
    if requirement is None or plan.cuda_libs is None:
        return plan
    path = cuda_wiring.build(plan.cuda_libs, plan.requirement)
    return replace(
        plan, requirements=tuple(str(path) if r == requirement else r for r in plan.requirements)
    )


def _check_one(plan: InstallPlan, pip: PipOptions) -> InstallPlan:
    _check_served(plan, pip)
    plan = with_wiring_wheel(plan)
    resolution = _resolve(plan, pip)
    if resolution.ok:
        return replace(plan, resolution=resolution)
    where = f"Python {plan.python_version} on {plan.platform}"
    if resolution.offline:
        raise OfflineError(
            f"offline: pip cannot reach the package index ({resolution.offline}); "
            + offline_hint(plan.python, plan.requirement)
        )
    missing = re.search(r"No matching distribution found for (\S+)", resolution.error or "")
    lacking = missing.group(1) if missing else None
    if pip.no_index:
        folders = ", ".join(pip.find_links) or "the --find-links folders"
        wanted = lacking or " ".join(
            shlex.quote(r) for r in plan.requirements if not os.path.isabs(r)
        )
        what = (
            f"{lacking} (which {plan.requirement} needs) has no wheel"
            if lacking
            else (f"the install of {plan.requirement} does not resolve ({resolution.error})")
        )
        raise NotServedError(
            f"{what} for {where} in {folders} (--no-index); put it there with "
            f"`pip download {shlex.quote(wanted) if lacking else wanted} --only-binary=:all: "
            "-d DIR` on a machine that reaches the index"
        )
    if lacking and lacking != plan.requirement:
        raise NotServedError(
            f"{lacking} (which {plan.requirement} needs) has no wheel for {where} "
            f"({resolution.error}); use a Python that has one (3.11 or older)"
        )
    raise NotServedError(
        f"the complete install of {plan.requirement} does not resolve for {where}: "
        f"{resolution.error}"
    )


def _resolve(plan: InstallPlan, pip: PipOptions) -> Resolution:
    tags = plan.tags or TargetTags((3, 11), "CPython", "linux-x86_64")
    return resolve(plan.python, plan.requirements, pip, pip_version=plan.pip_version, tags=tags)


def _check_served(plan: InstallPlan, pip: PipOptions) -> None:
    """Make sure pip serves ``package==version`` for the target's Python and platform:
    the clearest message for the commonest failure (an offline box, a folder of wheels
    without it, a version that does not exist)."""
    where = f"Python {plan.python_version} on {plan.platform}"
    try:
        served = served_versions(plan.python, plan.package, pip)
    except OfflineError as exc:
        raise OfflineError(f"{exc}; {offline_hint(plan.python, plan.requirement)}") from None
    if served is None:  # an old pip: ask it to download the wheel instead
        with tempfile.TemporaryDirectory(prefix="kmx-tune-check-") as tmp:
            run = download(plan.python, plan.requirement, tmp, pip)
        if run.ok:
            return
        offline = offline_reason(run.output)
        if offline:
            raise OfflineError(
                f"offline: pip cannot reach the package index ({offline}); "
                + offline_hint(plan.python, plan.requirement)
            )
        listed = re.search(r"\(from versions: ([^)]*)\)", run.output)
        shown = f"available: {_shorten(listed.group(1).split(', ')[::-1])}" if listed else ""
        raise NotServedError(
            f"{plan.requirement} is not served for {where}"
            + (f"; {shown}" if shown else f" ({run.error_line()})")
            + _old_pip_hint(plan.python, plan.python_version)
        )
    if not served and pip.no_index:
        folders = ", ".join(pip.find_links) or "the --find-links folders of your pip configuration"
        dest = pip.find_links[0] if len(pip.find_links) == 1 else "DIR"
        reqs = " ".join(shlex.quote(r) for r in plan.requirements if not os.path.isabs(r))
        raise NotServedError(
            f"no {plan.package} wheel for {where} in {folders} (--no-index); put the wheels "
            f"there with `pip download {reqs} --only-binary=:all: -d {dest}` on a machine "
            "that reaches the index, for the same Python and platform"
        )
    if not served:
        raise NotServedError(
            f"{plan.package} has no release for {where} on the configured index; "
            "choose another flavor (kmx-tune install-mxnet --dry-run shows the advice)"
        )
    if not any(v == plan.version or versions.same(v, plan.version) for v in served):
        shown = _shorten(served)
        raise NotServedError(f"{plan.requirement} is not served for {where}; available: {shown}")


def _shorten(versions: Sequence[str]) -> str:
    return ", ".join(versions[:8]) + (", ..." if len(versions) > 8 else "")


def _old_pip_hint(python: str, python_version: str) -> str:
    """pip older than 19.3 does not know the manylinux2014 tag of every MXNet 1.6+ wheel."""
    run = run_pip(python, ["--version"])
    found = re.match(r"pip (\S+)", run.output.strip())
    release = versions.release(python_version)
    py = (release[0], release[1]) if len(release) >= 2 else (3, 0)
    if (
        found is None
        or versions.parse(found.group(1)) is None
        or versions.at_least(found.group(1), "19.3")
    ):
        return ""
    return (
        f"; its pip {found.group(1) if found else ''} cannot see manylinux2014 wheels: "
        f"upgrade it with `{shlex.join([python, '-m', 'pip', *pip_upgrade_args(py)])}`"
    )
