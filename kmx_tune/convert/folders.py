"""Dataset folders: which files a folder holds (with ``--recursive``, its whole tree),
and converting many files on several cores.

The per-file converter (:func:`kmx_tune.convert.core.convert_file`) is the unit of
work: it reads one file and writes one output beside it or under ``-o``, atomically,
and records on the output that it is complete and verified (:mod:`.record`). Here
those units run one after the other or in worker processes (processes, not threads:
HDF5 allows one call at a time per process). A scheduler for more than one machine
would hand out the same units; nothing here depends on running them together.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from kmx_tune.fsio import TEMP_MARK

T = TypeVar("T")
R = TypeVar("R")

# Measured by benchmarks/bench_convert_folders.py on the project's 2-core VM (README):
# 300 x 1 MB .npy shards, two workers 1.4-2.2x as fast as one, four 1.1-1.8x; 200 x 1 MB
# .h5 shards, two 0.9-1.2x, four 0.8-0.9x. So: one worker per core. Files of 64 MB and
# more already use all cores inside one conversion (the transpose kernel).
SMALL_FILE = 64 << 20


def default_jobs(sizes: Sequence[int]) -> int:
    """Workers for files of these sizes: one per core (at most 4) when there are
    several files and most are small; else 1 (a big file uses every core itself)."""
    if len(sizes) < 2:
        return 1
    small = sum(1 for s in sizes if s < SMALL_FILE)
    if small * 2 < len(sizes):
        return 1
    return max(1, min(4, os.cpu_count() or 1, len(sizes)))


def _wanted(path: Path, suffixes: Collection[str], to: str) -> bool:
    return (
        path.suffix.lower() in suffixes
        and not path.name.startswith(".")
        and TEMP_MARK not in path.name
        and not path.stem.endswith("." + to)  # an earlier run's output
    )


def walk(
    folder: Path,
    suffixes: Collection[str],
    to: str,
    *,
    recursive: bool,
    exclude: Path | None = None,
) -> list[Path]:
    """The files in ``folder`` to convert, sorted: those directly inside, or with
    ``recursive`` the whole tree (hidden folders, symlinked folders and ``exclude``,
    the output folder, left out)."""
    found: list[Path] = []
    skip = exclude.resolve() if exclude is not None and exclude.exists() else None
    if not recursive:
        return [c for c in sorted(folder.iterdir()) if c.is_file() and _wanted(c, suffixes, to)]
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)
        )
        found.extend(
            here / f
            for f in sorted(files)
            if (here / f).is_file() and _wanted(here / f, suffixes, to)
        )
    return found


def run_all(
    func: Callable[[T], R],
    items: Sequence[T],
    jobs: int,
    *,
    done: Callable[[int, R], Any] | None = None,
) -> list[R]:
    """``func`` on every item, in order; on ``jobs`` worker processes when more than
    one. ``func`` must be a module-level function (it is pickled) that never raises:
    it turns failures into results. ``done(index, result)`` runs as each finishes."""
    results: list[R | None] = [None] * len(items)
    if jobs <= 1 or len(items) <= 1:
        for i, item in enumerate(items):
            results[i] = func(item)
            if done:
                done(i, results[i])  # type: ignore[arg-type]
        return results  # type: ignore[return-value]
    # spawn, not fork: this process may hold threads (the copy pool, writer threads)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(func, item): i for i, item in enumerate(items)}
        for future in _as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if done:
                done(i, results[i])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]


def _as_completed(futures: Iterable[Any]) -> Iterable[Any]:
    from concurrent.futures import as_completed

    return as_completed(list(futures))


__all__ = ["SMALL_FILE", "default_jobs", "run_all", "walk"]
