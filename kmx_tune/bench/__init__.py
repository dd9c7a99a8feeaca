"""``kmx-tune bench``: what channels_first buys over channels_last when a real model
trains with the MXNet (and Keras) installed in the target, on this machine, and which
settings make it fastest.

The measuring happens in worker processes in the target interpreter
(``_in_target/kmx_bench.py``, see :mod:`kmx_tune.bench.workers`): each builds the model
in both formats (Keras when it imports there: kmx-tune's representative CNN or the
user's ``--model FILE:FUNCTION``; otherwise the same network as the MXNet graph
Keras-MXNet builds) and times training steps on command. This module plans the cells,
alternates them round by round, and turns the step times into the prediction (median
of per-round ratios), the spread, and the best settings.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kmx_tune.bench import operators
from kmx_tune.bench.model import (
    BenchResult,
    Cell,
    KindRow,
    ModelInfo,
    ModelSpec,
    Spread,
    attribution_rows,
    parse_model_spec,
)
from kmx_tune.bench.session import (
    STEPS_PER_ROUND,
    Session,
    Times,
    cell_index,
)
from kmx_tune.bench.settings import BULK, ProcessSetting, bulk_values, process_settings
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST, FORMATS
from kmx_tune.target import Target

__all__ = [
    "DEFAULT_BATCH",
    "BenchResult",
    "Cell",
    "KindRow",
    "ModelSpec",
    "Spread",
    "parse_model_spec",
    "run_bench",
]

DEFAULT_BATCH = 64
WARMUP = 3  # steps per cell before timing; the first one binds the graph
ROUNDS = 8
QUICK_ROUNDS = 6
PROFILED_STEPS = 3
QUICK_PROFILED_STEPS = 2
# Wall time after which no new round starts (at least MIN_ROUNDS run), so that a busy
# machine or a slow model still gives an answer in about 2 minutes (30 s with --quick).
# An explicit --repeats is always run in full.
BUDGET_S = 95.0
QUICK_BUDGET_S = 22.0


def _cores() -> tuple[int, int]:
    """(physical, logical) cores this process may use, as OpenMP would count them."""
    from kmx_tune.hardware.cpu import cgroup_cpu_limit, parse_proc_cpuinfo, usable_cores

    logical = usable_cores() or os.cpu_count() or 1
    physical = logical
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        found = parse_proc_cpuinfo(text).get("physical_cores")
        if found:
            physical = min(int(found), logical)
    except OSError:
        pass
    limit = cgroup_cpu_limit()
    if limit:
        physical = min(physical, max(1, int(limit)))
        logical = min(logical, max(1, int(limit)))
    return max(1, physical), max(1, logical)


def _openmp(target: Target) -> str | None:
    """intel | gnu for the target's MXNet build; None when it cannot be told."""
    from kmx_tune.doctor.environment import openmp_runtime

    try:
        dists = target.facts().mxnet_distributions
    except KmxError:
        return None
    if len(dists) != 1:
        return None
    found = openmp_runtime(dists[0])
    return found[0] if found else None


def _current_format(env: Mapping[str, str]) -> tuple[str, str, dict[str, Any]]:
    """(image_data_format, where it comes from, the keras.json values Keras would use)."""
    from kmx_tune.keras_config import read

    try:
        state = read(env=env)
        effective = state.effective
    except (OSError, ValueError, RecursionError):
        return CHANNELS_LAST, "Keras's default (keras.json could not be read)", {}
    fmt, source = effective["image_data_format"]
    if fmt not in FORMATS:
        return CHANNELS_LAST, "Keras's default", {}
    where = f"{state.location.path}" if source == "keras.json" else source
    return str(fmt), where, {k: v for k, (v, _) in effective.items()}


def _keras_home(folder: Path, values: Mapping[str, Any], fmt: str) -> Path:
    """A private KERAS_HOME for the workers: Keras writes keras.json on first import
    where there is none, and the user's must not change because of a benchmark."""
    home = folder / "keras-home"
    home.mkdir()
    config = {
        "floatx": values.get("floatx", "float32"),
        "epsilon": values.get("epsilon", 1e-07),
        "backend": "mxnet",
        "image_data_format": fmt,
    }
    (home / "keras.json").write_text(json.dumps(config, indent=4), encoding="utf-8")
    return home


def _load() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _checked(ctx: str, batch: int, rounds: int | None, quick: bool) -> int:
    """The number of rounds to run; UsageError for arguments that cannot work."""
    if ctx not in ("cpu", "gpu"):
        raise UsageError(f"--ctx {ctx}: use cpu or gpu")
    if batch < 1:
        raise UsageError(f"--batch {batch}: must be at least 1")
    n_rounds = rounds if rounds is not None else (QUICK_ROUNDS if quick else ROUNDS)
    if n_rounds < 1:
        raise UsageError(f"--repeats {n_rounds}: must be at least 1")
    return n_rounds


def run_bench(
    target: Target,
    *,
    ctx: str = "cpu",
    batch: int = DEFAULT_BATCH,
    rounds: int | None = None,
    quick: bool = False,
    inference: bool = False,
    model: ModelSpec | None = None,
    env: Mapping[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure both formats (and, unless *quick*, every setting worth trying) in the
    target interpreter; raise KmxError with one line when that cannot be done."""
    n_rounds = _checked(ctx, batch, rounds, quick)
    say = progress or (lambda _text: None)
    started = time.perf_counter()
    env = dict(os.environ if env is None else env)
    mode = "inference" if inference else "train"
    physical, logical = _cores()
    openmp = _openmp(target) if ctx == "cpu" and not quick else None
    fmt_now, fmt_from, keras_values = _current_format(env)
    settings = process_settings(
        env,
        ctx=ctx,
        physical=physical,
        logical=logical,
        intel_openmp=openmp == "intel",
        quick=quick,
    )
    bulk = bulk_values(env, mode, quick)
    config = {
        "model": "keras" if model else "auto",
        "model_file": str(model.file) if model else None,
        "model_function": model.function if model else None,
        "mode": mode,
        "batch": batch,
        "warmup": WARMUP,
        "ctx": ctx,
        "bulk": bulk,
    }
    load_start = _load()
    deadline = None if rounds is not None else started + (QUICK_BUDGET_S if quick else BUDGET_S)
    profiled = QUICK_PROFILED_STEPS if quick else PROFILED_STEPS
    with tempfile.TemporaryDirectory(prefix="kmx-bench-") as tmp:
        folder = Path(tmp)
        base_env = dict(env)
        base_env.update(
            KERAS_BACKEND="mxnet",
            KERAS_HOME=str(_keras_home(folder, keras_values, fmt_now)),
            PYTHONIOENCODING="utf-8",
        )
        session = Session(target.python, config, batch, model, say)
        readies, times, profile = session.run(
            settings, base_env, folder, n_rounds, deadline, len(bulk), profiled
        )
    n_rounds = len(next(iter(times.values())))
    load_end = _load()
    ready = readies[0]
    cells = _cells(settings, bulk, mode, env, times, batch, fmt_now, n_rounds)
    ratio = _ratio(times, bulk, n_rounds)
    notes = _notes(load_start, load_end, logical, ready)
    return BenchResult(
        python=target.python,
        mxnet_version=ready.get("mxnet_version"),
        keras_version=ready.get("keras_version"),
        ctx=ctx,
        mode=mode,
        batch=batch,
        model=_model_info(ready, model),
        warmup=WARMUP,
        rounds=n_rounds,
        steps_per_round=STEPS_PER_ROUND,
        cpu_count=ready.get("cpu_count"),
        physical_cores=physical,
        openmp=openmp,
        load_average=(load_start, load_end)
        if load_start is not None and load_end is not None
        else None,
        current_format=fmt_now,
        current_format_from=fmt_from,
        cells=cells,
        ratio=ratio,
        attribution=attribution_rows(profile.get("ms_per_step") or {}, operators.by_kind),
        profiled_steps=profiled,
        elapsed_s=time.perf_counter() - started,
        quick=quick,
        notes=tuple(notes),
    )


def _notes(
    load_start: float | None, load_end: float | None, logical: int, ready: Mapping[str, Any]
) -> list[str]:
    """What the reader should know about how the figures were taken."""
    notes = []
    busiest = max(load_start or 0.0, load_end or 0.0)
    if busiest > logical:
        notes.append(
            f"this machine was busy (load average up to {busiest:.1f} on {logical} CPUs): other "
            "work slows every setting, and OpenMP threads most; run bench again when it is "
            "quieter before you change OMP_NUM_THREADS"
        )
    if ready.get("keras_error") and ready.get("model_kind") == "symbolic":
        notes.append(
            "Keras with the MXNet backend did not import in the target "
            f"({ready['keras_error']}), so the MXNet graph Keras-MXNet builds was timed instead"
        )
    return notes


def _cells(
    settings: list[ProcessSetting],
    bulk: list[str | None],
    mode: str,
    env: Mapping[str, str],
    times: Times,
    batch: int,
    fmt_now: str,
    n_rounds: int,
) -> tuple[Cell, ...]:
    bulk_var = BULK[mode]
    reference = times[(0, cell_index(fmt_now, 0, len(bulk)))]
    cells = []
    for w, setting in enumerate(settings):
        for fmt in FORMATS:
            for b, value in enumerate(bulk):
                steps = times[(w, cell_index(fmt, b, len(bulk)))]
                effective = env.get(bulk_var) if value is None else value
                speedups = [reference[r] / steps[r] for r in range(n_rounds)]
                step = Spread.of([s * 1000.0 for s in steps])
                cells.append(
                    Cell(
                        format=fmt,
                        settings=setting.values + ((bulk_var, effective),),
                        current=setting.current and value is None,
                        step_ms=step,
                        images_per_s=batch / (step.median / 1000.0),
                        speedup=Spread.of(speedups),
                    )
                )
    return tuple(cells)


def _ratio(times: Times, bulk: list[str | None], n_rounds: int) -> Spread:
    first = times[(0, cell_index(CHANNELS_FIRST, 0, len(bulk)))]
    last = times[(0, cell_index(CHANNELS_LAST, 0, len(bulk)))]
    return Spread.of([last[r] / first[r] for r in range(n_rounds)])


def _model_info(ready: Mapping[str, Any], model: ModelSpec | None) -> ModelInfo:
    info = ready.get("model") or {}
    kind = str(ready.get("model_kind") or "keras")
    if model is not None:
        description = f"{model.function}() from {model.file}"
    else:
        description = str(ready.get("description") or "")
    return ModelInfo(
        kind=kind,
        description=description,
        layers=dict(info.get("layers") or {}),
        params=info.get("params"),
        input_shapes=dict(info.get("input_shapes") or {}),
        spec=model.text if model else None,
    )
