"""Benchmark `kmx-tune convert DIR` on many small shards: one file at a time
(``--jobs 1``) against several worker processes (``--jobs 2``, ``--jobs 4``).

Each run is the real command (``python -m kmx_tune convert DIR -r -o OUT -j N``),
timed from start to exit; its output folder is removed and `sync` runs before the
next. The settings alternate, round after round; figures are medians, ratios are
medians of per-round ratios against ``--jobs 1``. The default (no ``--jobs``) is run
too, to show which setting it picks.

    python benchmarks/bench_convert_folders.py                 # 300 x 1 MB .npy, 3 rounds
    python benchmarks/bench_convert_folders.py --kind h5 --shards 200 --shard-mb 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MAKE = r"""
import sys, numpy as np
from pathlib import Path
root, kind, n, mb = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rows = max(1, int(mb * 1e6 // (32 * 32 * 3)))
rng = np.random.default_rng(0)
for i in range(n):
    d = root / f"part{i % 10}"
    d.mkdir(parents=True, exist_ok=True)
    x = rng.integers(0, 256, (rows, 32, 32, 3), dtype=np.uint8)
    if kind == "npy":
        np.save(d / f"s{i:05d}.npy", x)
    elif kind == "npz":
        np.savez(d / f"s{i:05d}.npz", x=x, y=np.arange(rows))
    else:
        import h5py
        with h5py.File(d / f"s{i:05d}.h5", "w") as f:
            f.create_dataset("x", data=x)
            f.create_dataset("y", data=np.arange(rows))
"""


def run(src: Path, out: Path, jobs: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=True)
    cmd = [sys.executable, "-m", "kmx_tune", "convert", str(src), "-r", "-o", str(out), "--json"]
    if jobs != "default":
        cmd += ["-j", jobs]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    data = json.loads(proc.stdout)
    statuses = {f["status"] for f in data["files"]}
    if proc.returncode != 0 or statuses != {"converted"}:
        raise SystemExit(f"jobs {jobs}: exit {proc.returncode}, statuses {statuses}")
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kind", choices=["npy", "npz", "h5"], default="npy")
    ap.add_argument("--shards", type=int, default=300)
    ap.add_argument("--shard-mb", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", default="1,2,4,default")
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="kmx-bench-folders-"))
    src, out = base / "shards", base / "out"
    subprocess.run(
        [sys.executable, "-c", MAKE, str(src), args.kind, str(args.shards), str(args.shard_mb)],
        check=True,
    )
    settings = args.jobs.split(",")
    times: dict[str, list[float]] = {s: [] for s in settings}
    for r in range(args.rounds):
        order = settings[r % len(settings) :] + settings[: r % len(settings)]
        for s in order:
            times[s].append(run(src, out, s))
    print(
        f"{args.shards} x {args.shard_mb} MB .{args.kind} shards, {os.cpu_count()} CPUs, "
        f"{args.rounds} rounds; load average before: {os.getloadavg()[0]:.1f}"
    )
    print("| --jobs | median wall | vs --jobs 1 | all runs |")
    print("|---|---|---|---|")
    for s in settings:
        ratio = statistics.median(a / b for a, b in zip(times["1"], times[s]))
        runs = ", ".join(f"{t:.2f}" for t in times[s])
        print(f"| {s} | {statistics.median(times[s]):.2f} s | {ratio:.2f}x as fast | {runs} |")
    shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
