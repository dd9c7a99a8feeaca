"""Install one MXNet flavor into a target interpreter, verify it, roll back on failure.

plan (pure) -> check that pip serves it -> keep a way back -> uninstall the other
flavors -> pip install -> verify in a fresh process -> roll back if anything failed.

Everything that touches the target runs the target's own pip (``PY -m pip``) with
argument lists, under the user's pip configuration (index, proxy, certificates), plus
the index options given on the command line. kmx-tune never reimplements pip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

from kmx_tune.errors import KmxError, TargetError, UsageError
from kmx_tune.target import (
    Distribution,
    TargetInfo,
    is_mxnet_distribution,
    normalize,
    run_in_target,
)

if TYPE_CHECKING:
    from kmx_tune.hardware import HardwareProfile

# pip prints these (inside its retry warnings) when it cannot reach an index at all.
_OFFLINE_MARKERS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Name or service not known",
    "No route to host",
    "Network is unreachable",
    "Connection refused",
    "ProxyError",
    "Cannot connect to proxy",
    "Read timed out",
    "Connection timed out",
    "ConnectTimeoutError",
)
_NOT_FOUND_MARKERS = ("No matching distribution found", "Could not find a version that satisfies")
# pip older than 21.2 has no `pip index`
_NO_INDEX_COMMAND = ('unknown command "index"', "no such command", "ERROR: unknown command")

# Never uninstalled by a rollback, whatever happened to them.
_PACKAGING_TOOLS = frozenset({"pip", "setuptools", "wheel"})


class OfflineError(UsageError):
    """pip cannot reach any package index."""


class NotServedError(UsageError):
    """The index serves no such version for this Python and platform."""


# --------------------------------------------------------------------------- pip


@dataclass(frozen=True)
class PipOptions:
    """Index options passed through to every pip command, on top of the user's pip
    configuration (pip.conf, PIP_* variables), which pip reads itself."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def args(self) -> list[str]:
        out: list[str] = []
        if self.index_url:
            out += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            out += ["--extra-index-url", url]
        for link in self.find_links:
            out += ["--find-links", link]
        if self.no_index:
            out.append("--no-index")
        return out


@dataclass(frozen=True)
class PipRun:
    args: tuple[str, ...]
    returncode: int
    output: str  # empty when pip wrote straight to the user's terminal

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_line(self) -> str:
        """pip's last ERROR line, or its last line."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR:")]
        if errors:
            return errors[-1][len("ERROR:") :].strip()
        return lines[-1] if lines else f"pip exited with status {self.returncode}"


def _pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env


def run_pip(python: str, args: Sequence[str], out: IO[str] | None = None) -> PipRun:
    """Run ``python -m pip *args``. With *out* None the output is captured; otherwise
    pip writes to *out* as it goes (straight to its file descriptor when it has one,
    so pip sees the terminal and draws its progress bars)."""
    cmd = [python, "-m", "pip", *args]
    try:
        if out is None:
            proc = subprocess.run(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=_pip_env(),
                check=False,
            )
            return PipRun(tuple(args), proc.returncode, proc.stdout)
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        out.flush()
        if fd >= 0:
            rc = subprocess.run(cmd, stdout=fd, stderr=fd, env=_pip_env(), check=False).returncode
            return PipRun(tuple(args), rc, "")
        # No file descriptor (a test runner's stream): copy pip's output line by line.
        lines: list[str] = []
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=_pip_env(),
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line)
                out.write(line)
        return PipRun(tuple(args), child.returncode, "".join(lines))
    except OSError as exc:
        raise TargetError(f"{python}: cannot run it ({exc.strerror or exc})") from None


def pip_list(python: str) -> dict[str, Distribution]:
    """What pip sees installed in the target: {normalized name: Distribution}."""
    run = run_pip(python, ["list", "--verbose", "--format=json", "--disable-pip-version-check"])
    json_lines = [line for line in run.output.splitlines() if line.startswith("[")]
    if not run.ok or not json_lines:
        raise KmxError(f"`{python} -m pip list` failed: {run.error_line()}")
    rows: list[dict[str, Any]] = json.loads(json_lines[-1])
    return {
        normalize(row["name"]): Distribution(row["name"], row["version"], row.get("location", ""))
        for row in rows
    }


def _offline_reason(output: str) -> str | None:
    """What kept pip from reaching an index ("Connection refused at 127.0.0.1:9"), or None."""
    for marker in _OFFLINE_MARKERS:
        if marker in output:
            where = re.search(r"Could not fetch URL (\w+://[^/\s]+)", output) or re.search(
                r"HTTPS?ConnectionPool\(host='([^']+)'", output
            )
            return f"{marker} at {where.group(1)}" if where else marker
    return None


def offline_hint(python_label: str, requirement: str) -> str:
    return (
        f"to install from a folder of wheels, put {requirement} (and numpy) there and run "
        f"kmx-tune install-mxnet --python {python_label} --no-index --find-links DIR"
    )


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class InstallPlan:
    """What will change in the target and why. Built without touching anything."""

    python: str
    python_version: str
    platform: str
    package: str
    version: str
    requirements: tuple[str, ...]  # what pip installs: "mxnet==1.9.1", "numpy<1.24"
    uninstall: tuple[Distribution, ...]  # every other MXNet distribution in the target
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    gpu: bool  # a CUDA flavor: verify CUDA, num_gpus() and an operation on gpu(0)
    expect_mkldnn: bool  # verify that MKLDNN is compiled in
    build_from_source: str | None = None
    installed: tuple[Distribution, ...] = ()  # the MXNet distributions there now
    numpy_version: str | None = None  # the numpy there now

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "python_version": self.python_version,
            "platform": self.platform,
            "package": self.package,
            "version": self.version,
            "requirements": list(self.requirements),
            "uninstall": [{"name": d.name, "version": d.version} for d in self.uninstall],
            "installed": [{"name": d.name, "version": d.version} for d in self.installed],
            "numpy": self.numpy_version,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "gpu": self.gpu,
            "expect_mkldnn": self.expect_mkldnn,
            "build_from_source": self.build_from_source,
        }


def make_plan(
    target: TargetInfo,
    *,
    package: str,
    version: str,
    requirements: Sequence[str],
    reasons: Sequence[str] = (),
    warnings: Sequence[str] = (),
    gpu: bool = False,
    expect_mkldnn: bool = False,
    build_from_source: str | None = None,
) -> InstallPlan:
    """The plan for installing *package*==*version* into *target*. Pure: every other
    MXNet distribution goes, because all flavors write the same ``mxnet`` module and
    a second one silently overwrites the first one's files. When another flavor is
    there, *package* goes too even at the wanted version: uninstalling the other
    flavor deletes the files they share, and pip would then find *package*
    "already satisfied" and leave the broken module in place."""
    others = [d for d in target.mxnet_distributions if normalize(d.name) != normalize(package)]
    uninstall = target.mxnet_distributions if others else ()
    return InstallPlan(
        python=target.python,
        python_version=target.version_str,
        platform=f"{target.platform} {target.machine}",
        package=package,
        version=version,
        requirements=tuple(requirements),
        uninstall=uninstall,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gpu=gpu,
        expect_mkldnn=expect_mkldnn,
        build_from_source=build_from_source,
        installed=target.mxnet_distributions,
        numpy_version=target.numpy_version,
    )


def plan_install(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    flavor: str | None = None,
    version: str | None = None,
    cpu_only: bool = False,
) -> InstallPlan:
    """The plan from the advisor for *hw* and the target's Python, unless ``--flavor``
    or ``--version`` overrides it. Pure. UsageError for an unknown flavor."""
    from kmx_tune.flavors import get_flavor, recommend, requirements_for

    advice = recommend(hw, (target.version[0], target.version[1]), cpu_only=cpu_only)
    if flavor is None and version is None:
        chosen = get_flavor(advice.package)
        return make_plan(
            target,
            package=advice.package,
            version=advice.version,
            requirements=advice.requirements,
            reasons=advice.reasons,
            warnings=advice.warnings,
            gpu=advice.gpu,
            expect_mkldnn=expects_mkldnn(chosen.mkl, chosen.onednn, advice.version),
            build_from_source=advice.build_from_source,
        )
    chosen = get_flavor(flavor) if flavor is not None else get_flavor(advice.package)
    if cpu_only and chosen.cuda is not None:
        raise UsageError(
            f"--cpu and --flavor {chosen.name} (a CUDA {chosen.cuda} build) contradict each "
            "other; drop one of them"
        )
    if version is not None:
        try:
            Version(version)
        except InvalidVersion:
            raise UsageError(
                f"--version {version}: not a version number; give one such as 1.9.1 "
                f"(`pip index versions {chosen.name}` lists them)"
            ) from None
    release = version or chosen.newest
    reasons: list[str] = []
    warnings: list[str] = []
    if flavor is not None:
        reasons.append(f"{chosen.name}: given with --flavor")
    else:
        reasons.extend(advice.reasons)
    reasons.append(
        f"version {release}: given with --version"
        if version is not None
        else f"version {release}: the newest {chosen.name} release"
    )
    if chosen.name == advice.package:
        warnings.extend(advice.warnings)
    else:
        why = advice.reasons[0] if advice.reasons else ""
        warnings.append(
            f"the advice for this machine is {advice.package}=={advice.version}"
            + (f" ({why})" if why else "")
        )
    return make_plan(
        target,
        package=chosen.name,
        version=release,
        requirements=requirements_for(chosen.name, release),
        reasons=reasons,
        warnings=warnings,
        gpu=chosen.cuda is not None,
        expect_mkldnn=expects_mkldnn(chosen.mkl, chosen.onednn, release),
        build_from_source=advice.build_from_source if chosen.name == advice.package else None,
    )


def expects_mkldnn(mkl_variant: bool, onednn_in_newest: bool, version: str) -> bool:
    """Whether this release of a flavor has MKL-DNN built in: the "-mkl" variants
    always; plain and CUDA builds from 1.7.0 on (MXNet NEWS.md, 1.7.0); never
    mxnet-native (the flavor's ``onednn`` is False)."""
    if mkl_variant:
        return True
    return onednn_in_newest and _release(version) >= (1, 7)


def _release(version: str) -> tuple[int, ...]:
    """(1, 8) for "1.8.0.post0": mxnet reports 1.8.0 for the wheel 1.8.0.post0."""
    try:
        release = list(Version(version).release)
    except InvalidVersion:
        return ()
    while release and release[-1] == 0:
        release.pop()
    return tuple(release)


# --------------------------------------------------------------------------- availability


def served_versions(python: str, package: str, pip: PipOptions) -> tuple[str, ...] | None:
    """The versions of *package* that pip would install into *python* (its Python and
    platform), newest first, from ``pip index versions``. None when this pip has no
    ``index`` command. Raises OfflineError / NotServedError."""
    # -vv: with retries off, pip logs why it could not fetch an index page only at debug level
    run = run_pip(python, ["index", "versions", "-vv", package, *pip.args()])
    if not run.ok and any(marker in run.output for marker in _NO_INDEX_COMMAND):
        return None
    offline = _offline_reason(run.output)
    for line in run.output.splitlines():
        if line.strip().startswith("Available versions:"):
            versions = line.split(":", 1)[1]
            return tuple(v.strip() for v in versions.split(",") if v.strip())
    if offline:
        raise OfflineError(f"offline: pip cannot reach the package index ({offline})")
    if any(marker in run.output for marker in _NOT_FOUND_MARKERS):
        return ()
    raise KmxError(f"`pip index versions {package}` failed: {run.error_line()}")


def _download(python: str, requirement: str, dest: str, pip: PipOptions) -> PipRun:
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
        versions = served_versions(plan.python, plan.package, pip)
    except OfflineError as exc:
        raise OfflineError(f"{exc}; {offline_hint(plan.python, plan.requirement)}") from None
    if versions is None:  # an old pip: ask it to download the wheel instead
        with tempfile.TemporaryDirectory(prefix="kmx-tune-check-") as tmp:
            run = _download(plan.python, plan.requirement, tmp, pip)
        if run.ok:
            return _check_wheels(plan, pip, plan.requirements[1:], where)
        offline = _offline_reason(run.output)
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
    if not versions and pip.no_index:
        folders = ", ".join(pip.find_links) or "the --find-links folders of your pip configuration"
        dest = pip.find_links[0] if len(pip.find_links) == 1 else "DIR"
        reqs = " ".join(shlex.quote(r) for r in plan.requirements)
        raise NotServedError(
            f"no {plan.package} wheel for {where} in {folders} (--no-index); put the wheels "
            f"there with `pip download {reqs} --only-binary=:all: -d {dest}` on a machine "
            "that reaches the index, for the same Python and platform"
        )
    if not versions:
        raise NotServedError(
            f"{plan.package} has no release for {where} on the configured index; "
            "choose another flavor (kmx-tune install-mxnet --dry-run shows the advice)"
        )
    wanted = Version(plan.version) if _release(plan.version) else None
    if not any(v == plan.version or (wanted and _same(v, wanted)) for v in versions):
        shown = _shorten(versions)
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
                run = _download(plan.python, requirement, tmp, pip)
        if run.ok:
            continue
        offline = _offline_reason(run.output)
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
    try:
        old = found is not None and Version(found.group(1)) < Version("19.3")
    except InvalidVersion:
        old = False
    if not old:
        return ""
    return (
        f"; its pip {found.group(1) if found else ''} cannot see manylinux2014 wheels: "
        f"upgrade it with `{python} -m pip install --upgrade pip`"
    )


def _version_or_none(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _same(text: str, wanted: Version) -> bool:
    try:
        return Version(text) == wanted
    except InvalidVersion:
        return False


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Verification:
    """What a fresh process of the target saw when it imported the new MXNet."""

    ok: bool
    problems: tuple[str, ...]
    mxnet_version: str | None
    features: Mapping[str, bool] | None
    num_gpus: int | None
    numpy_version: str | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "mxnet_version": self.mxnet_version,
            "numpy_version": self.numpy_version,
            "features": None if self.features is None else dict(self.features),
            "num_gpus": self.num_gpus,
        }


def judge(
    plan: InstallPlan, report: Mapping[str, Any], installed: Mapping[str, Distribution]
) -> Verification:
    """Pure: the problems in a verify report (kmx_verify_mxnet.py) and pip's list."""
    problems: list[str] = []
    mx_dists = sorted(
        (d for key, d in installed.items() if is_mxnet_distribution(key)), key=lambda d: d.name
    )
    wanted = _version_or_none(plan.version)
    if not (
        len(mx_dists) == 1
        and normalize(mx_dists[0].name) == normalize(plan.package)
        and (
            mx_dists[0].version == plan.version
            or (wanted is not None and _same(mx_dists[0].version, wanted))
        )
    ):
        found = ", ".join(d.requirement for d in mx_dists) or "none"
        problems.append(
            f"pip lists these MXNet distributions: {found}; expected {plan.requirement} only"
        )
    if report.get("import_error"):
        hint = ""
        if report.get("library_path"):
            hint = (
                f" (MXNET_LIBRARY_PATH={report['library_path']} is set: mxnet loads that file "
                "instead of the wheel's library; unset it)"
            )
        problems.append(f"import mxnet failed: {report['import_error']}{hint}")
    elif not report.get("mxnet_file"):
        # a namespace package: what is left of a folder another flavor's uninstall emptied
        problems.append(
            "import mxnet found a folder without __init__.py: the package's files are "
            "missing (reinstall it with pip install --force-reinstall)"
        )
    else:
        version = report.get("mxnet_version") or "?"
        if _release(version) != _release(plan.version):
            problems.append(f"import mxnet gave version {version}, expected {plan.version}")
        new = installed.get(normalize(plan.package))
        mx_file = report.get("mxnet_file") or ""
        if (
            new
            and new.location
            and not os.path.realpath(mx_file).startswith(os.path.realpath(new.location) + os.sep)
        ):
            problems.append(
                f"import mxnet found {mx_file}, not the installed one in {new.location} "
                "(check PYTHONPATH)"
            )
        features = report.get("features")
        if features is None:
            problems.append(f"mx.runtime.Features() failed: {report.get('features_error')}")
        else:
            if plan.gpu and not features.get("CUDA"):
                problems.append("mx.runtime.Features() has no CUDA in a GPU flavor")
            if plan.expect_mkldnn and not features.get("MKLDNN"):
                problems.append("mx.runtime.Features() has no MKLDNN")
        if report.get("cpu_op") != 8.0:
            problems.append(f"a tiny operation on cpu failed: {report.get('cpu_op_error')}")
        if plan.gpu:
            if report.get("num_gpus_error"):
                problems.append(f"mx.context.num_gpus() failed: {report['num_gpus_error']}")
            elif not report.get("num_gpus"):
                problems.append("mx.context.num_gpus() is 0: MXNet sees no GPU")
            elif report.get("gpu_op") != 8.0:
                problems.append(f"a tiny operation on gpu(0) failed: {report.get('gpu_op_error')}")
    return Verification(
        ok=not problems,
        problems=tuple(problems),
        mxnet_version=report.get("mxnet_version"),
        features=report.get("features"),
        num_gpus=report.get("num_gpus"),
        numpy_version=report.get("numpy_version"),
        raw=dict(report),
    )


def verify(plan: InstallPlan, installed: Mapping[str, Distribution]) -> Verification:
    """Import the new MXNet in a fresh process of the target and judge what it saw."""
    try:
        report = run_in_target(
            plan.python, "kmx_verify_mxnet.py", ["--gpu"] if plan.gpu else [], timeout=300
        )
    except TargetError as exc:  # the process crashed (a segfault, an illegal instruction)
        report = {"import_error": str(exc)}
    return judge(plan, report, installed)


# --------------------------------------------------------------------------- act


@dataclass(frozen=True)
class Change:
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
) -> tuple[Change, ...]:
    changes = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b is not None and a is not None and b.version == a.version:
            continue
        name = (a or b).name  # type: ignore[union-attr]  # one of them is set
        changes.append(Change(name, b.version if b else None, a.version if a else None))
    return tuple(changes)


@dataclass(frozen=True)
class InstallResult:
    plan: InstallPlan
    outcome: str  # "installed" | "rolled-back" | "rollback-failed"
    failure: str | None  # why the new flavor was not kept
    verification: Verification | None
    changes: tuple[Change, ...]  # the target now, against before
    rollback_changes: tuple[Change, ...] = ()  # what the rollback did
    rollback_problem: str | None = None

    @property
    def exit_code(self) -> int:
        return 0 if self.outcome == "installed" else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "failure": self.failure,
            "plan": self.plan.to_json(),
            "verification": None if self.verification is None else self.verification.to_json(),
            "changes": [c.to_json() for c in self.changes],
            "rollback": {
                "changes": [c.to_json() for c in self.rollback_changes],
                "problem": self.rollback_problem,
            }
            if self.outcome != "installed"
            else None,
        }


Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def execute(
    plan: InstallPlan,
    pip: PipOptions,
    *,
    out: IO[str] | None = None,
    log: Log = _quiet,
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
        run = _download(plan.python, dist.requirement, kit, pip)
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
) -> tuple[tuple[Change, ...], str | None]:
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
