"""``kmx-tune profile``: run a script in the target interpreter under the MXNet
profiler and summarise where the operator time went.

The script runs in a child process (``_in_target/kmx_profile_runner.py``) with this
process's stdin, stdout and stderr, so it behaves as under ``python SCRIPT ARGS``.
The runner writes the profiler's aggregate statistics to a JSON file, which is all
this module reads back; the Chrome trace goes where the user asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, TargetError, UsageError
from kmx_tune.target import IN_TARGET_DIR, Target

RUNNER = IN_TARGET_DIR / "kmx_profile_runner.py"
MXNET_MISSING = 3  # the runner's exit status when mxnet cannot be imported

# Bulk execution fuses a hybridized/symbolic graph's operators into one engine task,
# which then shows in the profile as a single block; 0 turns it off (MXNet env_var docs).
BULK_EXEC_OFF: Mapping[str, str] = {
    "MXNET_EXEC_BULK_EXEC_TRAIN": "0",
    "MXNET_EXEC_BULK_EXEC_INFERENCE": "0",
}

# Operator names that only move data between layouts. Keras-MXNet's channels_last
# path calls mx.sym.transpose around every convolution and pooling; swapaxes shows
# as SwapAxis. Backward passes and the numpy-compatible frontend add prefixes.
_LAYOUT_OPS = frozenset({"transpose", "swapaxis", "swapaxes"})
_PREFIXES = ("_backward_", "_npi_", "_np_", "_npx_")

# Above this share of operator time, switching to channels_first is worth the work.
TRANSPOSE_ADVICE_SHARE = 0.05

# The profiler domain of the MXNet C API calls: wall time of Python->C calls (WaitAll
# blocks for everything queued), not operator work, so it is left out of the table.
_NOT_OPERATORS = frozenset({"MXNET_C_API"})


def is_layout_transpose(name: str) -> bool:
    """True for transpose / SwapAxis operators and their backward and numpy forms."""
    key = name.lower()
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key in _LAYOUT_OPS


@dataclass(frozen=True)
class OperatorStat:
    name: str
    count: int
    total_ms: float
    min_ms: float
    max_ms: float
    avg_ms: float
    share: float  # of the total operator time

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "total_ms": self.total_ms,
            "avg_ms": self.avg_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
            "share": self.share,
        }


@dataclass(frozen=True)
class ProfileResult:
    script: str
    args: tuple[str, ...]
    python: str
    mxnet_version: str | None
    exit_status: int
    script_error: str | None  # "ValueError: ..." when the script raised
    operators: tuple[OperatorStat, ...]  # by total time, largest first
    total_ms: float
    transpose_ms: float
    trace: str | None  # Chrome trace file, when the profiler wrote one
    collected: bool  # False when the run left no statistics (killed, os._exit, ...)
    env: Mapping[str, str]  # what kmx-tune set in the script's environment
    top_n: int | None = None  # how many operators to show; None: all

    @property
    def exit_code(self) -> int:
        """The script's own exit status: kmx-tune profile exits as the script did."""
        return self.exit_status

    @property
    def transpose_share(self) -> float:
        return self.transpose_ms / self.total_ms if self.total_ms > 0 else 0.0

    @property
    def transpose_operators(self) -> tuple[OperatorStat, ...]:
        return tuple(op for op in self.operators if is_layout_transpose(op.name))

    @property
    def advice(self) -> str:
        share = self.transpose_share
        if not self.collected or self.total_ms <= 0:
            return "no operator ran under the profiler, so there is nothing to advise"
        if self.transpose_ms <= 0:
            return "no layout transposes: nothing to gain from changing the data format"
        if share >= TRANSPOSE_ADVICE_SHARE:
            return (
                "switch the model to channels_first: `kmx-tune set-format channels_first`, "
                "`kmx-tune convert` for the saved image data, `kmx-tune migrate` for "
                "the model code; `kmx-tune bench` shows what it buys on this machine"
            )
        return "a small share: channels_first would save little here"

    def top(self, n: int) -> tuple[OperatorStat, ...]:
        return self.operators[: max(n, 0)]

    def to_json(self) -> dict[str, Any]:
        ops = self.operators if self.top_n is None else self.top(self.top_n)
        return {
            "schema": "kmx-tune/profile/1",
            "script": self.script,
            "args": list(self.args),
            "python": self.python,
            "mxnet_version": self.mxnet_version,
            "exit_status": self.exit_status,
            "script_error": self.script_error,
            "collected": self.collected,
            "total_ms": self.total_ms,
            "operators": [op.to_json() for op in ops],
            "operators_total": len(self.operators),
            "transpose": {
                "total_ms": self.transpose_ms,
                "share": self.transpose_share,
                "operators": [op.name for op in self.transpose_operators],
                "advice": self.advice,
            },
            "trace": self.trace,
            "env": dict(self.env),
        }


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def operators_from_aggregate(aggregate: Mapping[str, Any] | None) -> tuple[OperatorStat, ...]:
    """Per-operator statistics from ``mx.profiler.dumps(format='json')``:
    ``{"Time": {domain: {name: {Count, Total, Min, Max, Avg}}}, "Unit": {"Time": "ms"}}``.
    Operators of every domain but the C API are merged by name."""
    merged: dict[str, dict[str, float]] = {}
    time_section = (aggregate or {}).get("Time") or {}
    for domain, ops in time_section.items():
        if domain in _NOT_OPERATORS or not isinstance(ops, Mapping):
            continue
        for name, stat in ops.items():
            if not isinstance(stat, Mapping):
                continue
            count = _number(stat.get("Count"))
            total = _number(stat.get("Total"))
            lo, hi = _number(stat.get("Min")), _number(stat.get("Max"))
            entry = merged.get(name)
            if entry is None:
                merged[name] = {"count": count, "total": total, "min": lo, "max": hi}
            else:
                entry["count"] += count
                entry["total"] += total
                entry["min"] = min(entry["min"], lo)
                entry["max"] = max(entry["max"], hi)
    grand = sum(e["total"] for e in merged.values())
    stats = [
        OperatorStat(
            name=name,
            count=int(e["count"]),
            total_ms=e["total"],
            min_ms=e["min"],
            max_ms=e["max"],
            avg_ms=e["total"] / e["count"] if e["count"] else 0.0,
            share=e["total"] / grand if grand > 0 else 0.0,
        )
        for name, e in merged.items()
    ]
    stats.sort(key=lambda op: (-op.total_ms, op.name))
    return tuple(stats)


def result_from_report(
    report: Mapping[str, Any] | None,
    *,
    script: str,
    args: Sequence[str],
    python: str,
    exit_status: int,
    env: Mapping[str, str],
) -> ProfileResult:
    """Build the result from the runner's report (None when it wrote none)."""
    report = report or {}
    operators = operators_from_aggregate(report.get("aggregate"))
    total = sum(op.total_ms for op in operators)
    transposes = sum(op.total_ms for op in operators if is_layout_transpose(op.name))
    status = report.get("exit_status")
    return ProfileResult(
        script=script,
        args=tuple(args),
        python=python,
        mxnet_version=report.get("mxnet_version"),
        exit_status=int(status) if isinstance(status, int) else exit_status,
        script_error=report.get("script_error"),
        operators=operators,
        total_ms=total,
        transpose_ms=transposes,
        trace=report.get("trace"),
        collected=report.get("aggregate") is not None,
        env=dict(env),
    )


def default_trace_path(script: str | os.PathLike[str]) -> Path:
    """``SCRIPTNAME.profile.json`` in the current directory."""
    return Path.cwd() / f"{Path(script).stem}.profile.json"


def profile_script(
    script: str | os.PathLike[str],
    args: Sequence[str] = (),
    *,
    target: Target,
    out: str | os.PathLike[str] | None = None,
    script_stdout_to_stderr: bool = False,
) -> ProfileResult:
    """Run *script* with *args* in the target interpreter under the MXNet profiler.

    The script inherits stdin, stdout and stderr (stdout goes to stderr when
    *script_stdout_to_stderr*, so that ``--json`` output stays clean). Raises
    UsageError for a missing script, KmxError when mxnet cannot be imported."""
    script_path = Path(script)
    if not script_path.is_file():
        what = "is a folder" if script_path.is_dir() else "no such file"
        raise UsageError(f"{script}: {what}; give the path of the Python script to profile")
    trace = Path(out).expanduser() if out is not None else default_trace_path(script_path)
    trace = trace.absolute()
    if trace.is_dir():
        name = f"--out {out}" if out is not None else str(trace)
        raise UsageError(
            f"{name}: is a folder; give a file name for the trace with --out, such as "
            "--out profile.json"
        )
    if not trace.parent.is_dir():
        raise UsageError(f"--out {out or trace}: folder {trace.parent} does not exist")
    _check_writable(trace)

    env = dict(os.environ)
    env.update(BULK_EXEC_OFF)
    with tempfile.TemporaryDirectory(prefix="kmx-profile-") as tmp:
        stats = Path(tmp) / "stats.json"
        cmd = [
            target.python,
            str(RUNNER),
            "--out",
            str(trace),
            "--stats",
            str(stats),
            "--",
            os.fspath(script),
            *args,
        ]
        # fd 2 by number: the script's output must bypass any Python-level wrapper
        stdout = 2 if script_stdout_to_stderr else None
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=stdout)
        except OSError as exc:
            raise TargetError(
                f"{target.python}: cannot run it ({exc.strerror or exc}); give the path of a "
                "Python 3.6+ interpreter with --python"
            ) from None
        try:
            status = proc.wait()
        except KeyboardInterrupt:
            # The child got the same SIGINT; let it save its profile and finish.
            status = proc.wait()
        report = _read_report(stats)

    if status == MXNET_MISSING and report is not None and report.get("mxnet_error"):
        raise KmxError(
            f"mxnet cannot be imported in {target.python} ({report['mxnet_error']}); install it "
            f"with `kmx-tune install-mxnet --python {target.python}` and check the set-up with "
            f"`kmx-tune doctor --python {target.python}`"
        )
    if status < 0:  # killed by a signal: report it the way a shell does
        status = 128 - status
    return result_from_report(
        report,
        script=os.fspath(script),
        args=args,
        python=target.python,
        exit_status=status,
        env=BULK_EXEC_OFF,
    )


def _check_writable(trace: Path) -> None:
    """Fail before the script runs when the trace cannot be written: MXNet's profiler
    gives up silently. Opening for append creates nothing that stays and truncates
    nothing that exists."""
    existed = trace.exists()
    try:
        with open(trace, "ab"):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot write the trace {trace} ({exc.strerror or exc}); choose a writable "
            "place with --out FILE"
        ) from None
    if not existed:
        with contextlib.suppress(OSError):
            trace.unlink()


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
