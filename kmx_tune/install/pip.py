"""Run the target's own pip (``PY -m pip``) with argument lists, under the user's pip
configuration (index, proxy, certificates) plus the index options given on the command
line, and read what it says. kmx-tune never reimplements pip."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError, TargetError, UsageError

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
NOT_FOUND_MARKERS = ("No matching distribution found", "Could not find a version that satisfies")


# The newest pip each old Python can run: a plain `pip install --upgrade pip` there fails
# where the index also serves newer pips (seen on 3.6: "pip requires Python '>=3.10'"
# from a find-links folder), and `pip install 'pip<22'` without --upgrade is "already
# satisfied" by pip 18.1. Source: each pip release's Requires-Python on the index.
PIP_FOR_PYTHON: dict[tuple[int, int], str] = {
    (3, 6): "pip<22",
    (3, 7): "pip<24.1",
    (3, 8): "pip<25.1",
}


def pip_upgrade_args(python_version: tuple[int, int]) -> list[str]:
    """``pip install`` arguments that upgrade pip as far as *python_version* allows."""
    return ["install", "--upgrade", PIP_FOR_PYTHON.get(python_version, "pip")]


class OfflineError(UsageError):
    """pip cannot reach any package index."""


class NotServedError(UsageError):
    """The index serves no such version for this Python and platform."""


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


def pip_env() -> dict[str, str]:
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
                env=pip_env(),
                check=False,
            )
            return PipRun(tuple(args), proc.returncode, proc.stdout)
        try:
            fd = out.fileno()
        except (AttributeError, OSError, ValueError):
            fd = -1
        out.flush()
        if fd >= 0:
            rc = subprocess.run(cmd, stdout=fd, stderr=fd, env=pip_env(), check=False).returncode
            return PipRun(tuple(args), rc, "")
        # No file descriptor (a test runner's stream): copy pip's output line by line.
        lines: list[str] = []
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=pip_env(),
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


def offline_reason(output: str) -> str | None:
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
