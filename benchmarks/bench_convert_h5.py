"""Benchmark `kmx-tune convert` on HDF5 datasets against the naive h5py way.

Naive: read the whole dataset (``f["x"][:]``), transpose, write it to a new file with
the same storage (``create_dataset(data=...)``), copy the labels, fsync. kmx-tune:
``convert_file``. Each method runs in its own child process, which times only the
work and reports its own peak RSS (ru_maxrss); `sync` runs between methods; the
methods alternate, round after round, and the figures are medians (ratios: medians of
per-round ratios), so a noisy disk or a busy neighbour hits both alike.

    python benchmarks/bench_convert_h5.py                    # 256 MB and 1 GB, 3 rounds
    python benchmarks/bench_convert_h5.py --sizes 64 --rounds 5 --gzip
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, os, resource, sys, time
method, src, dst = sys.argv[1:4]
import h5py, numpy as np

def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)

if method == "kmx":
    from kmx_tune.convert import convert_file
t = time.perf_counter()
if method == "naive":
    with h5py.File(src, "r") as fin, h5py.File(dst, "w") as fout:
        d = fin["x"]
        x = d[:].transpose(0, 3, 1, 2)
        kw = {}
        if d.chunks:
            kw = dict(chunks=True, compression=d.compression, compression_opts=d.compression_opts)
        fout.create_dataset("x", data=x, **kw)
        fout.create_dataset("y", data=fin["y"][:])
    fsync(dst)
elif method == "kmx":
    convert_file(src, dst)
else:
    raise SystemExit("unknown method " + method)
seconds = time.perf_counter() - t
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "rss_mb": rss_mb}))
"""

MAKE = r"""
import sys, h5py, numpy as np
path, mb, gzip = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
n = max(1, mb * 1_000_000 // (96 * 96 * 3))
rng = np.random.default_rng(0)
kw = dict(chunks=(64, 96, 96, 3), compression="gzip", compression_opts=1) if gzip else {}
yy, xx = np.mgrid[:96, :96]
base = ((np.sin(yy / 9.0) + np.cos(xx / 13.0)) * 50 + 100).astype(np.uint8)
with h5py.File(path, "w") as f:
    d = f.create_dataset("x", shape=(n, 96, 96, 3), dtype=np.uint8, **kw)
    for i in range(0, n, 1000):
        k = min(1000, n - i)
        block = rng.integers(0, 256, (k, 96, 96, 3), dtype=np.uint8)
        if gzip:  # image-like, so that it compresses
            block = base[None, :, :, None] // 2 + block // 10
        d[i : i + k] = block
    f.create_dataset("y", data=np.arange(n))
"""


def run(method: str, src: Path, dst: Path) -> dict[str, float]:
    dst.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    dst.unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="256,1024", help="dataset sizes in MB (default 256,1024)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gzip", action="store_true", help="chunked, gzip level 1 (else contiguous)")
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp folder)")
    args = ap.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="kmx-bench-h5-"))
    base.mkdir(parents=True, exist_ok=True)
    rows = []
    for mb in [int(s) for s in args.sizes.split(",") if s]:
        src = base / f"x{mb}.h5"
        subprocess.run(
            [sys.executable, "-c", MAKE, str(src), str(mb), "1" if args.gzip else "0"], check=True
        )
        methods = ["kmx", "naive"]
        times: dict[str, list[float]] = {m: [] for m in methods}
        rss: dict[str, float] = {m: 0.0 for m in methods}
        for r in range(args.rounds):
            for m in methods if r % 2 == 0 else methods[::-1]:
                res = run(m, src, base / "out.h5")
                times[m].append(res["seconds"])
                rss[m] = max(rss[m], res["rss_mb"])
        row = {
            "storage": "gzip-1 chunked" if args.gzip else "contiguous",
            "size_mb": round(src.stat().st_size / 1e6),
            "kmx_s": round(statistics.median(times["kmx"]), 2),
            "naive_s": round(statistics.median(times["naive"]), 2),
            "naive_over_kmx": round(
                statistics.median(n / k for n, k in zip(times["naive"], times["kmx"])), 2
            ),
            "kmx_rss_mb": round(rss["kmx"]),
            "naive_rss_mb": round(rss["naive"]),
            "kmx_all_s": [round(t, 2) for t in times["kmx"]],
            "naive_all_s": [round(t, 2) for t in times["naive"]],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        src.unlink()
    if args.dir is None:
        base.rmdir()
    print()
    head = "| storage | size | kmx-tune | naive h5py | naive / kmx-tune | RSS kmx-tune |"
    print(head + " RSS naive |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['storage']} | {r['size_mb']} MB | {r['kmx_s']} s | {r['naive_s']} s | "
            f"{r['naive_over_kmx']}x | {r['kmx_rss_mb']} MB | {r['naive_rss_mb']} MB |"
        )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
