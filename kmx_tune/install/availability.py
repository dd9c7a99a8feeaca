"""Is the plan installable? Asked of the target's own pip before anything changes."""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Sequence

from packaging.requirements import Requirement

from kmx_tune import versions
from kmx_tune.dists import normalize
from kmx_tune.errors import KmxError
from kmx_tune.install.pip import (
    NOT_FOUND_MARKERS,
    NotServedError,
    OfflineError,
    PipOptions,
    PipRun,
    offline_hint,
    offline_reason,
    run_pip,
)
from kmx_tune.install.plan import InstallPlan

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


def check_available(plan: InstallPlan, pip: PipOptions) -> None:
    """Make sure pip serves ``package==version`` for the target's Python and platform,
    before anything changes. Raises OfflineError or NotServedError with what to do."""
    where = f"Python {plan.python_version} on {plan.platform}"
    try:
        served = served_versions(plan.python, plan.package, pip)
    except OfflineError as exc:
        raise OfflineError(f"{exc}; {offline_hint(plan.python, plan.requirement)}") from None
    if served is None:  # an old pip: ask it to download the wheel instead
        with tempfile.TemporaryDirectory(prefix="kmx-tune-check-") as tmp:
            run = download(plan.python, plan.requirement, tmp, pip)
        if run.ok:
            return _check_wheels(plan, pip, plan.requirements[1:], where)
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
            + _old_pip_hint(plan.python)
        )
    if not served and pip.no_index:
        folders = ", ".join(pip.find_links) or "the --find-links folders of your pip configuration"
        dest = pip.find_links[0] if len(pip.find_links) == 1 else "DIR"
        reqs = " ".join(shlex.quote(r) for r in plan.requirements)
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
    _check_wheels(plan, pip, plan.requirements[1:], where)


def _check_wheels(
    plan: InstallPlan, pip: PipOptions, requirements: Sequence[str], where: str
) -> None:
    """The other requirements (numpy<1.24) need a wheel too: numpy 1.23 has none for
    Python 3.12 and newer, and building it from source there fails."""
    for requirement in requirements:
        req = Requirement(requirement)
        if (
            normalize(req.name) == "numpy"
            and plan.numpy_version is not None
            and req.specifier.contains(plan.numpy_version, prereleases=True)
        ):
            continue  # pip will keep the numpy that is there
        # A dry run resolves from the index's metadata without downloading the wheel
        # (pip >= 22.2); older pips download it. (The index was reachable a moment ago,
        # so no -vv for offline detection: it makes pip log every one of numpy's files.)
        run = run_pip(
            plan.python,
            [
                "install",
                "--dry-run",
                "--no-deps",
                "--only-binary=:all:",
                "--ignore-installed",
                requirement,
                *pip.args(),
            ],
        )
        if not run.ok and "--dry-run" in run.output and "no such option" in run.output:
            with tempfile.TemporaryDirectory(prefix="kmx-tune-check-") as tmp:
                run = download(plan.python, requirement, tmp, pip)
        if run.ok:
            continue
        offline = offline_reason(run.output)
        if offline:
            raise OfflineError(
                f"offline: pip cannot reach the package index ({offline}); "
                + offline_hint(plan.python, plan.requirement)
            )
        if pip.no_index:
            raise NotServedError(
                f"{requirement} (which {plan.requirement} needs) has no wheel for {where} in "
                f"{', '.join(pip.find_links) or 'the --find-links folders'} (--no-index); put "
                f"one there with `pip download {shlex.quote(requirement)} --only-binary=:all: "
                "-d DIR` on a machine that reaches the index"
            )
        raise NotServedError(
            f"{requirement} (which {plan.requirement} needs) has no wheel for {where} "
            f"({run.error_line()}); use a Python that has one (3.11 or older)"
        )


def _shorten(versions: Sequence[str]) -> str:
    return ", ".join(versions[:8]) + (", ..." if len(versions) > 8 else "")


def _old_pip_hint(python: str) -> str:
    """pip older than 19.3 does not know the manylinux2014 tag of every MXNet 1.6+ wheel."""
    run = run_pip(python, ["--version"])
    found = re.match(r"pip (\S+)", run.output.strip())
    if (
        found is None
        or versions.parse(found.group(1)) is None
        or versions.at_least(found.group(1), "19.3")
    ):
        return ""
    return (
        f"; its pip {found.group(1) if found else ''} cannot see manylinux2014 wheels: "
        f"upgrade it with `{python} -m pip install --upgrade pip`"
    )
