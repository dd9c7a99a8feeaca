"""What ``kmx-tune bench`` found, as data: each measured cell (a format under one
combination of settings), the prediction (how much faster channels_first trains than
channels_last with the user's settings), where the difference goes by layer type, and
the best combination with the commands that set it up."""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmx_tune.errors import UsageError
from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST
from kmx_tune.fsio import not_a_file
from kmx_tune.result import Result  # noqa: F401 (the protocol BenchResult follows)

SCHEMA = "kmx-tune/bench/2"
NEAR_BEST = 0.95  # cells within 5% of the fastest count as as fast: smaller gains are noise here


@dataclass(frozen=True)
class Spread:
    """Median, quartiles and range of a set of measurements."""

    median: float
    q1: float
    q3: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        if len(values) < 2:
            v = values[0]
            return cls(v, v, v, v, v)
        q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(med, q1, q3, min(values), max(values))

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "iqr": [self.q1, self.q3], "min": self.min, "max": self.max}


Settings = tuple[tuple[str, "str | None"], ...]


def settings_text(settings: Settings) -> str:
    return ", ".join(f"{k}={v}" if v is not None else f"{k} unset" for k, v in settings)


@dataclass(frozen=True)
class Cell:
    """One format under one combination of settings."""

    format: str
    settings: Settings  # each swept variable's value in that process (None: unset)
    current: bool  # the settings of the environment kmx-tune runs in
    step_ms: Spread  # time of one step over the rounds (each round: mean of its steps)
    images_per_s: float  # batch / median step time
    speedup: Spread  # per round: the reference cell's step time / this cell's

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "settings": dict(self.settings),
            "current_settings": self.current,
            "step_ms": self.step_ms.to_json(),
            "images_per_s": self.images_per_s,
            "speedup": self.speedup.to_json(),
        }


@dataclass(frozen=True)
class KindRow:
    """Operator time of one layer type per step, in both formats (MXNet profiler)."""

    kind: str
    channels_first_ms: float
    channels_last_ms: float

    @property
    def difference_ms(self) -> float:
        return self.channels_last_ms - self.channels_first_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "channels_first_ms": self.channels_first_ms,
            "channels_last_ms": self.channels_last_ms,
            "difference_ms": self.difference_ms,
        }


@dataclass(frozen=True)
class ModelInfo:
    kind: str  # keras | symbolic | user
    description: str
    layers: Mapping[str, int]
    params: int | None
    input_shapes: Mapping[str, Sequence[Sequence[int | None]]]  # format -> input shapes
    spec: str | None = None  # FILE:FUNCTION for a user model

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "description": self.description,
            "spec": self.spec,
            "layers": dict(self.layers),
            "params": self.params,
            "input_shapes": {k: [list(s) for s in v] for k, v in self.input_shapes.items()},
        }


@dataclass(frozen=True)
class BenchResult:
    python: str
    mxnet_version: str | None
    keras_version: str | None
    ctx: str
    mode: str  # train | inference
    batch: int
    model: ModelInfo
    warmup: int
    rounds: int
    steps_per_round: int
    cpu_count: int | None
    physical_cores: int | None
    openmp: str | None  # intel | gnu | None (not known)
    load_average: tuple[float, float] | None  # 1-minute load at the start and at the end
    current_format: str
    current_format_from: str
    cells: tuple[Cell, ...]
    ratio: Spread  # channels_last step time / channels_first, the user's settings
    attribution: tuple[KindRow, ...]  # largest difference first
    profiled_steps: int
    elapsed_s: float
    quick: bool
    notes: tuple[str, ...] = field(default=())
    exit_code: int = 0

    # ---- the cells that matter

    def current_cell(self, fmt: str) -> Cell:
        for cell in self.cells:
            if cell.current and cell.format == fmt:
                return cell
        raise KeyError(fmt)

    @property
    def reference(self) -> Cell:
        """The user's current set-up: their settings, their keras.json format."""
        return self.current_cell(self.current_format)

    @property
    def best(self) -> Cell:
        """The fastest cell; among cells within NEAR_BEST of it, the one that changes the
        fewest variables: a setting that buys a percent or two is noise here, not advice."""
        top = max(c.speedup.median for c in self.cells)
        near = [c for c in self.cells if c.speedup.median >= top * NEAR_BEST]
        current = dict(self.reference.settings)

        def changed(cell: Cell) -> int:
            return sum(1 for name, value in cell.settings if current.get(name) != value)

        return min(near, key=lambda c: (changed(c), -c.speedup.median))

    @property
    def verdict(self) -> str:
        r = self.ratio
        spread = f"IQR {r.q1:.2f}-{r.q3:.2f}"
        if r.q1 > 1.0:
            return f"channels_first is {r.median:.2f}x as fast as channels_last ({spread})"
        if r.q3 < 1.0:
            return (
                f"channels_last is {1 / r.median:.2f}x as fast as channels_first here "
                f"(ratio {r.median:.2f}, {spread})"
            )
        return f"no clear difference: ratio {r.median:.2f} ({spread} spans 1.0)"

    def changes(self, cell: Cell) -> tuple[list[str], list[str]]:
        """(shell exports, kmx-tune commands) that turn the current set-up into *cell*."""
        current = dict(self.reference.settings)
        exports = []
        for name, value in cell.settings:
            if current.get(name) == value:
                continue
            exports.append(
                f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}"
            )
        commands = []
        if cell.format != self.current_format:
            commands.append(f"kmx-tune set-format {cell.format}")
        return exports, commands

    def to_json(self) -> dict[str, Any]:
        best = self.best
        exports, commands = self.changes(best)
        forms = {}
        for fmt in (CHANNELS_FIRST, CHANNELS_LAST):
            cell = self.current_cell(fmt)
            forms[fmt] = {
                "images_per_s": cell.images_per_s,
                "step_ms": cell.step_ms.to_json(),
            }
        return {
            "schema": SCHEMA,
            "python": self.python,
            "mxnet_version": self.mxnet_version,
            "keras_version": self.keras_version,
            "ctx": self.ctx,
            "mode": self.mode,
            "batch": self.batch,
            "model": self.model.to_json(),
            "warmup": self.warmup,
            "rounds": self.rounds,
            "steps_per_round": self.steps_per_round,
            "cpu": {
                "count": self.cpu_count,
                "physical_cores": self.physical_cores,
                "openmp": self.openmp,
            },
            "load_average": list(self.load_average) if self.load_average else None,
            "current": {
                "format": self.current_format,
                "format_from": self.current_format_from,
                "settings": dict(self.reference.settings),
            },
            "forms": forms,
            "ratio": self.ratio.to_json(),
            "verdict": self.verdict,
            "attribution": {
                "profiled_steps": self.profiled_steps,
                "unit": "ms per step",
                "kinds": [row.to_json() for row in self.attribution],
            },
            "cells": [cell.to_json() for cell in self.cells],
            "best": {
                "format": best.format,
                "settings": dict(best.settings),
                "speedup": best.speedup.to_json(),
                "exports": exports,
                "commands": commands,
            },
            "quick": self.quick,
            "elapsed_s": self.elapsed_s,
            "notes": list(self.notes),
        }


def attribution_rows(
    ms_per_step: Mapping[str, Mapping[str, float]], by_kind: Any
) -> tuple[KindRow, ...]:
    """Per layer type, both formats, largest absolute difference first."""
    first = by_kind(ms_per_step.get(CHANNELS_FIRST) or {})
    last = by_kind(ms_per_step.get(CHANNELS_LAST) or {})
    rows = [
        KindRow(kind, first.get(kind, 0.0), last.get(kind, 0.0))
        for kind in sorted(set(first) | set(last))
    ]
    rows.sort(key=lambda row: (-abs(row.difference_ms), row.kind))
    return tuple(rows)


@dataclass(frozen=True)
class ModelSpec:
    """``--model FILE:FUNCTION``."""

    file: Path
    function: str

    @property
    def text(self) -> str:
        return f"{self.file}:{self.function}"


def parse_model_spec(spec: str) -> ModelSpec:
    """FILE:FUNCTION -> ModelSpec; UsageError naming what is wrong."""
    file, sep, function = spec.rpartition(":")
    if not sep or not file or not function:
        raise UsageError(
            f"--model {spec}: give FILE:FUNCTION, the Python file and the function in it "
            "that returns the compiled Keras model, e.g. --model train.py:build_model"
        )
    if not function.isidentifier():
        raise UsageError(
            f"--model {spec}: {function!r} is not a Python function name; give FILE:FUNCTION, "
            "e.g. --model train.py:build_model"
        )
    path = Path(file).expanduser()
    if not path.is_file():
        what = not_a_file(path)
        raise UsageError(f"--model {spec}: {file}: {what}; give the Python file that defines it")
    return ModelSpec(path.absolute(), function)
