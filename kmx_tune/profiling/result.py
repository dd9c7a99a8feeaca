"""What ``kmx-tune profile`` found (:class:`ProfileResult`), built from the runner's
report."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kmx_tune.bench.operators import is_layout_transpose
from kmx_tune.profiling.layout import Layout, layout_from
from kmx_tune.profiling.stats import OperatorStat, operators_from_aggregate


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
