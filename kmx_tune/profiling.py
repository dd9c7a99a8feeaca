"""``kmx-tune profile``: run a script in the target interpreter under the MXNet
profiler and summarise where the operator time went.

The script runs in a child process (``_in_target/kmx_profile_runner.py``) with this
process's stdin, stdout and stderr, so it behaves as under ``python SCRIPT ARGS``.
The runner writes the profiler's aggregate statistics to a JSON file, which is all
this module reads back; the Chrome trace goes where the user asked.

What channels_last costs (:class:`Layout`): Keras-MXNet runs a channels_last model
with transposes around every convolution and pooling, and BatchNormalization over the
last axis, which MXNet's CPU BatchNorm runs several times slower than over axis 1
(a real CIFAR-like CNN: 47% of its operator time in channels_last, against 285 ms
of 4,596 ms in channels_first). The runner records each BatchNorm's axis and data
shape and times one forward+backward in both forms after the script; with those,
the saving is estimated per operator group from this profile.
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

from kmx_tune.bench.operators import is_batchnorm, is_layout_transpose
from kmx_tune.errors import KmxError, TargetError, UsageError
from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST
from kmx_tune.target import IN_TARGET_DIR, Target

RUNNER = IN_TARGET_DIR / "kmx_profile_runner.py"
MXNET_MISSING = 3  # the runner's exit status when mxnet cannot be imported

# Bulk execution fuses a hybridized/symbolic graph's operators into one engine task,
# which then shows in the profile as a single block; 0 turns it off (MXNet env_var docs).
BULK_EXEC_OFF: Mapping[str, str] = {
    "MXNET_EXEC_BULK_EXEC_TRAIN": "0",
    "MXNET_EXEC_BULK_EXEC_INFERENCE": "0",
}

# The profiler domain of the MXNet C API calls: wall time of Python->C calls (WaitAll
# blocks for everything queued), not operator work, so it is left out of the table.
_NOT_OPERATORS = frozenset({"MXNET_C_API"})

# Above this share of operator time, transposes in a model whose format is not known
# are worth a look.
TRANSPOSE_ADVICE_SHARE = 0.05

# A trace bigger than this gets a hint about --steps.
LARGE_TRACE_BYTES = 10 * 1024 * 1024

SWITCH = (
    "`kmx-tune set-format channels_first`, `kmx-tune convert` for the saved image data, "
    "`kmx-tune migrate` for the model code; `kmx-tune bench` measures the gain on this machine"
)


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
class BatchNormUse:
    """BatchNorm calls of one kind the script made: the axis, the data's rank and
    per-sample shape (None when the graph did not say), and, for BatchNorm over the
    last axis of image data, one forward+backward timed as is and on axis 1."""

    axis: int
    ndim: int | None
    shape: tuple[int, ...] | None
    calls: int
    ms: float | None = None
    channels_first_ms: float | None = None

    @property
    def last_axis(self) -> bool:
        """Over the channel axis of channels_last image data (not axis 1 of >= 3-D)."""
        return self.ndim is not None and self.ndim >= 3 and self.axis != 1

    def to_json(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "ndim": self.ndim,
            "shape": list(self.shape) if self.shape is not None else None,
            "calls": self.calls,
            "ms": self.ms,
            "channels_first_ms": self.channels_first_ms,
        }


@dataclass(frozen=True)
class Layout:
    """What the data format costs in this profile."""

    format: str | None  # channels_last | channels_first | None (not told)
    evidence: tuple[str, ...]  # what told it
    total_ms: float  # all operator time
    batchnorm_ms: float  # BatchNorm forward and backward
    transpose_ms: float  # transpose/SwapAxis forward and backward
    batchnorm_saving_ms: float | None  # estimated; None when it could not be timed
    batchnorm: tuple[BatchNormUse, ...] = ()

    @property
    def transpose_saving_ms(self) -> float:
        return self.transpose_ms if self.format == CHANNELS_LAST else 0.0

    @property
    def saving_ms(self) -> float:
        return (self.batchnorm_saving_ms or 0.0) + self.transpose_saving_ms

    def share(self, ms: float) -> float:
        return ms / self.total_ms if self.total_ms > 0 else 0.0

    @property
    def main_cost(self) -> str | None:
        """batchnorm | transposes: the larger part of what channels_last costs."""
        if self.format != CHANNELS_LAST or self.saving_ms <= 0:
            return None
        if (self.batchnorm_saving_ms or 0.0) >= self.transpose_saving_ms:
            return "batchnorm"
        return "transposes"

    @property
    def advice(self) -> str:
        if self.total_ms <= 0:
            return "no operator ran under the profiler, so there is nothing to advise"
        why = "; ".join(self.evidence)
        if self.format == CHANNELS_LAST:
            parts = []
            bn, tr = self.batchnorm_saving_ms, self.transpose_saving_ms
            if bn is not None and bn > 0:
                parts.append(("BatchNorm", bn))
            if tr > 0:
                parts.append(("transposes", tr))
            parts.sort(key=lambda p: -p[1])
            detail = ", ".join(f"{name} {self.share(ms):.0%}" for name, ms in parts)
            main = ""
            if self.main_cost == "batchnorm":
                main = "; the main layout cost is BatchNorm over the last axis"
            elif self.main_cost == "transposes":
                main = "; the main layout cost is the transposes around convolutions and pooling"
            untimed = ""
            if bn is None and self.batchnorm_ms > 0:
                untimed = (
                    f" (BatchNorm over the last axis, {self.share(self.batchnorm_ms):.0%} of "
                    "operator time, would get faster too: it could not be timed here)"
                )
            return (
                f"the model runs channels_last ({why}): switching to channels_first would save "
                f"about {self.share(self.saving_ms):.0%} of operator time ({detail}){main}"
                f"{untimed}; {SWITCH}"
            )
        if self.format == CHANNELS_FIRST:
            text = (
                f"the model already runs channels_first ({why}): nothing to gain from "
                "changing the data format"
            )
            share = self.share(self.transpose_ms)
            if share >= TRANSPOSE_ADVICE_SHARE:
                text += (
                    f", but transposes take {share:.0%} of operator time: a layer given "
                    "data_format='channels_last' or a transpose in the data pipeline?"
                )
            return text
        share = self.share(self.transpose_ms)
        if self.transpose_ms <= 0:
            return (
                "no layout transposes and no BatchNorm over the last axis: nothing to gain "
                "from changing the data format"
            )
        if share >= TRANSPOSE_ADVICE_SHARE:
            return (
                f"transposes take {share:.0%} of operator time; if they come from "
                f"channels_last layers, channels_first would save them: {SWITCH}"
            )
        return (
            f"transposes take {share:.1%} of operator time, and nothing shows a channels_last model"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "evidence": list(self.evidence),
            "total_ms": self.total_ms,
            "batchnorm_ms": self.batchnorm_ms,
            "transpose_ms": self.transpose_ms,
            "saving": {
                "ms": self.saving_ms,
                "share": self.share(self.saving_ms),
                "batchnorm_ms": self.batchnorm_saving_ms,
                "batchnorm_share": self.share(self.batchnorm_saving_ms)
                if self.batchnorm_saving_ms is not None
                else None,
                "transposes_ms": self.transpose_saving_ms,
                "transposes_share": self.share(self.transpose_saving_ms),
            },
            "main_cost": self.main_cost,
            "batchnorm": [use.to_json() for use in self.batchnorm],
            "advice": self.advice,
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
    layout: Layout | None = None
    trace_bytes: int | None = None
    steps: int | None = None  # --steps: profile this many steps, then stop
    profiled_steps: int | None = None  # steps counted while profiling (with --steps)
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
        if not self.collected or self.total_ms <= 0 or self.layout is None:
            return "no operator ran under the profiler, so there is nothing to advise"
        return self.layout.advice

    def top(self, n: int) -> tuple[OperatorStat, ...]:
        return self.operators[: max(n, 0)]

    def to_json(self) -> dict[str, Any]:
        ops = self.operators if self.top_n is None else self.top(self.top_n)
        return {
            "schema": "kmx-tune/profile/2",
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
            },
            "layout": self.layout.to_json() if self.layout is not None else None,
            "advice": self.advice,
            "trace": self.trace,
            "trace_bytes": self.trace_bytes,
            "steps": self.steps,
            "profiled_steps": self.profiled_steps,
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
            name=str(name),
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


def _batchnorm_uses(report: Mapping[str, Any]) -> tuple[BatchNormUse, ...]:
    """The runner's BatchNorm records, with the timings where it took them."""
    timed: dict[tuple[int, int | None, tuple[int, ...] | None], Mapping[str, Any]] = {}
    for entry in report.get("batchnorm_timing") or ():
        if isinstance(entry, Mapping):
            timed[_bn_key(entry)] = entry
    uses = []
    for entry in report.get("batchnorm") or ():
        if not isinstance(entry, Mapping):
            continue
        key = _bn_key(entry)
        t = timed.get(key, {})
        ms, first = t.get("ms"), t.get("channels_first_ms")
        uses.append(
            BatchNormUse(
                axis=key[0],
                ndim=key[1],
                shape=key[2],
                calls=int(_number(entry.get("calls"))),
                ms=float(ms) if isinstance(ms, (int, float)) and ms > 0 else None,
                channels_first_ms=float(first)
                if isinstance(first, (int, float)) and first > 0
                else None,
            )
        )
    return tuple(uses)


def _bn_key(entry: Mapping[str, Any]) -> tuple[int, int | None, tuple[int, ...] | None]:
    ndim = entry.get("ndim")
    shape = entry.get("shape")
    return (
        int(_number(entry.get("axis"))),
        int(ndim) if isinstance(ndim, int) else None,
        tuple(int(d) for d in shape) if isinstance(shape, list) else None,
    )


def layout_from(operators: Sequence[OperatorStat], report: Mapping[str, Any]) -> Layout:
    """What the data format costs, from the operator statistics and the runner's
    records (Keras's format, the BatchNorm axes and their timings)."""
    total = sum(op.total_ms for op in operators)
    bn_ms = sum(op.total_ms for op in operators if is_batchnorm(op.name))
    tr_ms = sum(op.total_ms for op in operators if is_layout_transpose(op.name))
    uses = _batchnorm_uses(report)
    last = [u for u in uses if u.last_axis]
    first = [u for u in uses if u.ndim is not None and u.ndim >= 3 and u.axis == 1]
    keras = report.get("keras_format")
    evidence = []
    if keras in (CHANNELS_FIRST, CHANNELS_LAST):
        evidence.append(f"Keras image_data_format {keras}")
    if last:
        where = sorted({f"axis {u.axis} of {u.ndim}-D data" for u in last})
        evidence.append(f"BatchNorm over the last axis ({', '.join(where)})")
    if first and not last:
        evidence.append("BatchNorm over axis 1")
    if last or keras == CHANNELS_LAST:
        fmt: str | None = CHANNELS_LAST
    elif keras == CHANNELS_FIRST or first:
        fmt = CHANNELS_FIRST
    else:
        fmt = None
    saving: float | None = 0.0
    if fmt == CHANNELS_LAST and bn_ms > 0:
        saving = _batchnorm_saving(bn_ms, uses)
    return Layout(
        format=fmt,
        evidence=tuple(evidence),
        total_ms=total,
        batchnorm_ms=bn_ms,
        transpose_ms=tr_ms,
        batchnorm_saving_ms=saving,
        batchnorm=uses,
    )


def _batchnorm_saving(bn_ms: float, uses: Sequence[BatchNormUse]) -> float | None:
    """How much of the profile's BatchNorm time channels_first would save: the
    BatchNorm time, times the share the timed last-axis kinds take of it, times what
    moving them to axis 1 saves. None when no last-axis BatchNorm could be timed."""
    timed = [u for u in uses if u.last_axis and u.ms and u.channels_first_ms]
    if not timed:
        return None
    before = sum(u.calls * (u.ms or 0.0) for u in timed)
    after = sum(u.calls * (u.channels_first_ms or 0.0) for u in timed)
    # BatchNorm the runner did not time (other axes, unknown shapes) keeps its time;
    # its share is not known, so the timed kinds are taken to hold all of it
    if before <= 0:
        return None
    return bn_ms * max(0.0, 1.0 - after / before)


def result_from_report(
    report: Mapping[str, Any] | None,
    *,
    script: str,
    args: Sequence[str],
    python: str,
    exit_status: int,
    env: Mapping[str, str],
    steps: int | None = None,
) -> ProfileResult:
    """Build the result from the runner's report (None when it wrote none)."""
    report = report or {}
    operators = operators_from_aggregate(report.get("aggregate"))
    total = sum(op.total_ms for op in operators)
    transposes = sum(op.total_ms for op in operators if is_layout_transpose(op.name))
    status = report.get("exit_status")
    trace = report.get("trace")
    size = None
    if isinstance(trace, str):
        with contextlib.suppress(OSError):
            size = os.stat(trace).st_size
    profiled = report.get("profiled_steps")
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
        trace=trace if isinstance(trace, str) else None,
        collected=report.get("aggregate") is not None,
        env=dict(env),
        layout=layout_from(operators, report),
        trace_bytes=size,
        steps=steps,
        profiled_steps=int(profiled) if isinstance(profiled, int) else None,
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
    force: bool = False,
    steps: int | None = None,
    script_stdout_to_stderr: bool = False,
) -> ProfileResult:
    """Run *script* with *args* in the target interpreter under the MXNet profiler.

    The script inherits stdin, stdout and stderr (stdout goes to stderr when
    *script_stdout_to_stderr*, so that ``--json`` output stays clean). An existing
    trace file is replaced only with *force*, as ``convert`` replaces outputs. With
    *steps*, the profiler stops after that many steps. Raises UsageError for a missing
    script or a bad trace path, KmxError for an existing trace without *force* and
    when mxnet cannot be imported."""
    script_path = Path(script)
    if not script_path.is_file():
        what = "is a folder" if script_path.is_dir() else "no such file"
        raise UsageError(f"{script}: {what}; give the path of the Python script to profile")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
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
    if (trace.exists() or trace.is_symlink()) and not force:
        raise KmxError(
            f"{trace} exists; pass --force to overwrite it, or write the trace elsewhere "
            "with --out FILE"
        )
    _check_writable(trace)

    env = dict(os.environ)
    env.update(BULK_EXEC_OFF)
    with tempfile.TemporaryDirectory(prefix="kmx-profile-") as tmp:
        stats = Path(tmp) / "stats.json"
        cmd = [target.python, str(RUNNER), "--out", str(trace), "--stats", str(stats)]
        if steps is not None:
            cmd += ["--steps", str(steps)]
        cmd += ["--", os.fspath(script), *args]
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
        steps=steps,
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
