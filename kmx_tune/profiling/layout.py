"""What the data format costs in a profile (:class:`Layout`).

Keras-MXNet runs a channels_last model with transposes around every convolution and
pooling, and BatchNormalization over the last axis, which MXNet's CPU BatchNorm runs
several times slower than over axis 1 (a real CIFAR-like CNN: 47% of its operator time
in channels_last, against 285 ms of 4,596 ms in channels_first). The profile runner
records each BatchNorm's axis and data shape and times one forward+backward in both
forms after the script; with those, the saving is estimated per operator group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kmx_tune.bench.operators import BIAS_ADD, is_batchnorm, is_layout_transpose, kind_of
from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST
from kmx_tune.profiling.stats import OperatorStat, number

# Above this share of operator time, transposes in a model whose format is not known
# are worth a look.
TRANSPOSE_ADVICE_SHARE = 0.05

SWITCH = (
    "`kmx-tune set-format channels_first`, `kmx-tune convert` for the saved image data, "
    "`kmx-tune migrate` for the model code; `kmx-tune bench` measures the gain on this machine"
)


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
    # broadcast_add forward and backward: Keras-MXNet's bias adds, which run slower in
    # channels_first (a (1, C, 1, 1) bias: its gradient sums over every axis but 1)
    bias_add_ms: float = 0.0

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
            bias = ""
            if self.share(self.bias_add_ms) >= TRANSPOSE_ADVICE_SHARE:
                bias = (
                    f"; bias adds (broadcast_add, {self.share(self.bias_add_ms):.0%} of operator "
                    "time) run slower in channels_first and take back part of that"
                )
            return (
                f"the model runs channels_last ({why}): switching to channels_first would save "
                f"about {self.share(self.saving_ms):.0%} of operator time in BatchNorm and "
                f"transposes ({detail}){main}{untimed}{bias}; {SWITCH}"
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
            "bias_add_ms": self.bias_add_ms,
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
                calls=int(number(entry.get("calls"))),
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
        int(number(entry.get("axis"))),
        int(ndim) if isinstance(ndim, int) else None,
        tuple(int(d) for d in shape) if isinstance(shape, list) else None,
    )


def layout_from(operators: Sequence[OperatorStat], report: Mapping[str, Any]) -> Layout:
    """What the data format costs, from the operator statistics and the runner's
    records (Keras's format, the BatchNorm axes and their timings)."""
    total = sum(op.total_ms for op in operators)
    bn_ms = sum(op.total_ms for op in operators if is_batchnorm(op.name))
    tr_ms = sum(op.total_ms for op in operators if is_layout_transpose(op.name))
    bias_ms = sum(op.total_ms for op in operators if kind_of(op.name) == BIAS_ADD)
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
        bias_add_ms=bias_ms,
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
