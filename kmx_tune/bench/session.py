"""The worker processes of one bench run, and the rounds they take turns in: every cell
(format x setting) runs STEPS_PER_ROUND steps per round, in an order that turns every
round, so load that comes and goes lands on every cell alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.bench.failures import died_message, error_message
from kmx_tune.bench.model import ModelSpec
from kmx_tune.bench.workers import Worker, WorkerDied, WorkerFailed
from kmx_tune.errors import KmxError
from kmx_tune.formats import FORMATS

STEPS_PER_ROUND = 2
READY_TIMEOUT_S = 600.0  # import mxnet and Keras, build and warm up every cell
STEP_TIMEOUT_S = 300.0
MIN_ROUNDS = 3  # rounds run even past the time budget

# (worker index, cell index) -> one mean step time (seconds) per round
Times = dict[tuple[int, int], list[float]]


@dataclass(frozen=True)
class Session:
    """The worker processes of one bench run: started, measured, profiled, stopped."""

    python: str
    config: Mapping[str, Any]
    batch: int
    model: ModelSpec | None
    say: Callable[[str], None]

    def run(
        self,
        settings: Sequence[Any],
        base_env: Mapping[str, str],
        folder: Path,
        n_rounds: int,
        deadline: float | None,
        n_bulk: int,
        profiled: int,
    ) -> tuple[list[dict[str, Any]], dict[Any, list[float]], dict[str, Any]]:
        """One worker per process-level setting; the readiness reports, the step times
        of every cell, and the first worker's profile of *profiled* steps."""
        plural = "es" if len(settings) > 1 else ""
        self.say(
            f"Starting {len(settings)} worker process{plural} in {self.python} (each builds "
            "the model in both formats and warms it up)..."
        )
        workers: list[Worker] = []
        finished = False
        try:
            for setting in settings:
                workers.append(Worker(self.python, self.config, setting.env(base_env), folder))
            readies = [self._receive(w, READY_TIMEOUT_S) for w in workers]
            times = _measure(
                workers, readies, n_rounds, deadline, self.say, self.python, self.batch,
                self.model, n_bulk,
            )  # fmt: skip
            self.say(f"Profiling {profiled} steps of each format...")
            workers[0].send({"cmd": "profile", "steps": profiled})
            profile = self._receive(workers[0], STEP_TIMEOUT_S)
            finished = True
        finally:
            for worker in workers:
                worker.close(kill=not finished)
        return readies, times, profile

    def _receive(self, worker: Worker, timeout: float) -> dict[str, Any]:
        return _receive(worker, timeout, self.python, self.batch, self.model)


def _receive(
    worker: Worker, timeout: float, python: str, batch: int, model: ModelSpec | None
) -> dict[str, Any]:
    """The worker's next message, its failures turned into one-line errors."""
    try:
        return worker.receive(timeout)
    except WorkerFailed as exc:
        raise KmxError(
            error_message(exc.report, python, batch=batch, model=model.text if model else None)
        ) from None
    except WorkerDied as exc:
        raise KmxError(died_message(exc.stderr, exc.status, python, batch=batch)) from None


def _measure(
    workers: list[Worker],
    readies: list[dict[str, Any]],
    n_rounds: int,
    deadline: float | None,
    say: Callable[[str], None],
    python: str,
    batch: int,
    model: ModelSpec | None,
    n_bulk: int,
) -> Times:
    """Run every cell STEPS_PER_ROUND steps per round. The order turns every round (and
    reverses every other), so no cell always follows the same one. The two cells of the
    prediction (both formats with the current settings) are visited a second time half a
    round later when there are other cells, so the ratio has twice the samples and the
    sweep's cells cannot crowd it out. After *deadline* (perf_counter seconds) no new
    round starts once MIN_ROUNDS are done."""
    pairs = [(w, c) for w, ready in enumerate(readies) for c in range(len(ready["cells"]))]
    current = [(0, cell_index(fmt, 0, n_bulk)) for fmt in FORMATS]
    times: Times = {pair: [] for pair in pairs}
    for r in range(n_rounds):
        if deadline is not None and r >= MIN_ROUNDS and time.perf_counter() > deadline:
            say(f"Time is up after {r} rounds (a busy machine or a slow model)")
            break
        say(f"Round {r + 1}/{n_rounds}: {len(pairs)} cells x {STEPS_PER_ROUND} steps")
        shift = r % len(pairs)
        order = pairs[shift:] + pairs[:shift]
        if r % 2:
            order.reverse()
        if len(pairs) > len(current):
            half = len(order) // 2
            order[half:half] = current if r % 2 else current[::-1]
        seen: dict[tuple[int, int], list[float]] = {}
        for w, c in order:
            workers[w].send({"cmd": "run", "cell": c, "steps": STEPS_PER_ROUND})
            reply = _receive(workers[w], STEP_TIMEOUT_S, python, batch, model)
            seconds = [float(s) for s in reply.get("seconds") or []]
            if not seconds or min(seconds) <= 0:
                raise KmxError("the benchmark reported no usable step times")
            seen.setdefault((w, c), []).extend(seconds)
        for pair, seconds in seen.items():
            times[pair].append(sum(seconds) / len(seconds))
    return times


def cell_index(fmt: str, bulk_index: int, n_bulk: int) -> int:
    """Where the worker put (format, bulk value): formats outer, bulk values inner."""
    return FORMATS.index(fmt) * n_bulk + bulk_index
