"""Resolve a complete install before anything changes: which distributions, at which
versions, pip would install (or replace) in the target for a set of requirements,
the package's own requirements included.

The target's own pip answers when it can (``pip install --dry-run --report``, pip
22.2 and newer): it knows the target's Python, platform tags and what is installed.
An older pip cannot dry-run, so kmx-tune's own pip resolves instead, told the
target's Python version, implementation, ABI and platform tags (``--python-version``,
``--platform``, ... ``--target`` into a scratch folder that stays empty); it then
resolves as if nothing were installed, and :attr:`Resolution.method` says so.
Both read the user's pip configuration (index, proxy, certificates) and get the
index options given on the command line. Only wheels count (``--only-binary=:all:``):
a requirement that would build from source is one that fails on the user's box.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune import versions
from kmx_tune.dists import normalize
from kmx_tune.install.pip import PipOptions, PipRun, offline_reason, pip_env, run_pip

PIP_WITH_REPORT = "22.2"  # pip install --dry-run and --report arrived in pip 22.2


@dataclass(frozen=True)
class Resolved:
    """One distribution pip would install."""

    name: str
    version: str
    url: str  # where pip would take it from (an index URL, a file:// wheel)

    @property
    def key(self) -> str:
        return normalize(self.name)

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "url": self.url}


@dataclass(frozen=True)
class Resolution:
    """What resolving *requirements* for the target gave."""

    requirements: tuple[str, ...]
    installs: tuple[Resolved, ...]  # what pip would install or replace; empty on failure
    method: str  # how it was resolved, for the plan's reasons
    error: str | None = None  # pip's reason when it cannot resolve
    offline: str | None = None  # what kept pip from the index, when that was the reason

    @property
    def ok(self) -> bool:
        return self.error is None

    def version_of(self, name: str) -> str | None:
        for item in self.installs:
            if item.key == normalize(name):
                return item.version
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "requirements": list(self.requirements),
            "ok": self.ok,
            "method": self.method,
            "error": self.error,
            "installs": [item.to_json() for item in self.installs],
        }


@dataclass(frozen=True)
class TargetTags:
    """What pip needs to resolve for an interpreter it does not run in."""

    python_version: tuple[int, int]
    implementation: str  # "CPython", "PyPy"
    platform: str  # sysconfig.get_platform() there: "linux-x86_64", "win-amd64", ...
    libc: tuple[str, str] = ("", "")  # ("glibc", "2.36")

    def pip_args(self) -> list[str]:
        major, minor = self.python_version
        impl = {"CPython": "cp", "PyPy": "pp"}.get(self.implementation, "cp")
        args = ["--python-version", f"{major}.{minor}", "--implementation", impl]
        if impl == "cp":
            # CPython 3.7 and older built with pymalloc carry an "m" in their ABI tag
            abi = f"cp{major}{minor}" + ("m" if (major, minor) <= (3, 7) else "")
            args += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
        for platform_tag in platform_tags(self.platform, self.libc):
            args += ["--platform", platform_tag]
        return args


def platform_tags(sysconfig_platform: str, libc: tuple[str, str] = ("", "")) -> list[str]:
    """The wheel platform tags an interpreter on *sysconfig_platform* accepts, newest
    first (a subset of what pip computes, enough for the MXNet family): manylinux up
    to the glibc version, the legacy manylinux aliases, then the plain platform."""
    plat = sysconfig_platform.replace("-", "_").replace(".", "_")
    if plat.startswith("linux_"):
        arch = plat[len("linux_") :]
        glibc = versions.release(libc[1]) if libc[0] == "glibc" else ()
        newest_minor = glibc[1] if len(glibc) >= 2 and glibc[0] == 2 else 17
        tags = [f"manylinux_2_{minor}_{arch}" for minor in range(newest_minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        tags += [f"{name}_{arch}" for minor, name in legacy.items() if minor <= newest_minor]
        return [*tags, plat]
    return [plat]


def _report_installs(report: Any) -> tuple[Resolved, ...]:
    items = report.get("install") if isinstance(report, dict) else None
    found: list[Resolved] = []
    for item in items if isinstance(items, list) else ():
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(meta, dict):
            continue
        info = item.get("download_info")
        url = info.get("url", "") if isinstance(info, dict) else ""
        found.append(Resolved(str(meta.get("name")), str(meta.get("version")), str(url)))
    return tuple(found)


def _failure(run: PipRun) -> tuple[str, str | None]:
    """pip's reason for not resolving, and the offline reason when it is that."""
    offline = offline_reason(run.output)
    lines = [line.strip() for line in run.output.splitlines() if line.strip()]
    errors = [line[len("ERROR:") :].strip() for line in lines if line.startswith("ERROR:")]
    # pip's most telling lines: which version cannot be found, or the conflict itself
    telling = [e for e in errors if "No matching distribution" in e or "Cannot install" in e]
    reason = (telling or errors or [run.error_line()])[0]
    reason = re.sub(r"\s+", " ", reason)
    return reason[:400], offline


def _resolve_with(
    python: str, extra: Sequence[str], requirements: Sequence[str], pip: PipOptions, how: str
) -> Resolution:
    with tempfile.TemporaryDirectory(prefix="kmx-tune-resolve-") as tmp:
        report_path = Path(tmp) / "report.json"
        args = [
            "install",
            "--dry-run",
            "--quiet",
            "--only-binary=:all:",
            "--report",
            str(report_path),
            *extra,
            *requirements,
            *pip.args(),
        ]
        run = run_pip(python, args)
        if not run.ok or not report_path.exists():
            reason, offline = _failure(run)
            return Resolution(tuple(requirements), (), how, reason, offline)
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return Resolution(tuple(requirements), (), how, f"pip's report is unreadable: {exc}")
    return Resolution(tuple(requirements), _report_installs(report), how)


def resolve(
    python: str,
    requirements: Sequence[str],
    pip: PipOptions,
    *,
    pip_version: str | None,
    tags: TargetTags,
) -> Resolution:
    """Resolve *requirements* for the target interpreter *python*, whose pip is
    *pip_version* and whose tags are *tags*. Never raises for pip's own failures:
    the Resolution carries pip's reason."""
    if versions.at_least(pip_version, PIP_WITH_REPORT):
        how = f"resolved by the target's pip {pip_version} (pip install --dry-run --report)"
        return _resolve_with(python, [], requirements, pip, how)
    own = _own_pip_version()
    how = (
        f"resolved by kmx-tune's pip {own} for Python "
        f"{tags.python_version[0]}.{tags.python_version[1]} on {tags.platform}, because the "
        f"target's pip {pip_version or '(none)'} cannot dry-run (pip < {PIP_WITH_REPORT}); "
        "it resolves as if nothing were installed there"
    )
    with tempfile.TemporaryDirectory(prefix="kmx-tune-resolve-target-") as scratch:
        # pip refuses platform options without --target; with --dry-run nothing lands there
        extra = ["--target", scratch, *tags.pip_args()]
        return _resolve_with(sys.executable, extra, requirements, pip, how)


def _own_pip_version() -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        env=pip_env(),
        check=False,
    )
    found = re.match(r"pip (\S+)", proc.stdout)
    return found.group(1) if found else "?"
