"""Per-operator times (:class:`OperatorStat`) from the MXNet profiler's aggregate
statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# The profiler domain of the MXNet C API calls: wall time of Python->C calls (WaitAll
# blocks for everything queued), not operator work, so it is left out of the table.
_NOT_OPERATORS = frozenset({"MXNET_C_API"})


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


def number(value: Any) -> float:
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
            count = number(stat.get("Count"))
            total = number(stat.get("Total"))
            lo, hi = number(stat.get("Min")), number(stat.get("Max"))
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
