"""Benchmark `kmx-tune convert` against the naive numpy way and against `cp`.

Each method runs in its own child process, which times only the work (not Python's
start-up) and reports its own peak RSS. Every method ends with an fsync of its
output; `sync` runs between methods; methods alternate, round after round, and
the figures are medians of per-round ratios, so a noisy disk hits all alike.

    python benchmarks/bench_convert.py                      # 256 MB and 1 GB, 3 rounds
    python benchmarks/bench_convert.py --sizes 64 --compressed-mb 50 --rounds 5

Before and after a change: ``--baseline DIR`` also runs the kmx_tune package found in
DIR (say, ``git archive main kmx_tune | tar -x -C /tmp/base``) in the same rounds, and
quotes the median of per-round ratios (new / baseline). ``--fortran`` adds a
Fortran-ordered .npy of the first size; ``--members N`` an .npz of N small arrays.
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
import json, os, resource, subprocess, sys, time
method, src, dst = sys.argv[1:4]
if method == "kmx_base":
    sys.path.insert(0, os.environ["KMX_BENCH_BASE"])
import numpy as np

def fsync(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)

if method in ("kmx", "kmx_base"):
    from kmx_tune.convert import convert_file
    base = os.environ.get("KMX_BENCH_BASE")
    code_file = convert_file.__code__.co_filename
    assert bool(base and code_file.startswith(base)) == (method == "kmx_base"), code_file
t = time.perf_counter()
r0 = resource.getrusage(resource.RUSAGE_SELF)
if method == "cp":
    subprocess.run(["cp", src, dst], check=True)
    fsync(dst)
elif method == "naive_npy":
    # the issue's naive way, literally: np.load, transpose, np.save (of the view)
    np.save(dst, np.load(src).transpose(0, 3, 1, 2))
    fsync(dst)
elif method == "naive_npy_contig":
    # a stronger naive way: transpose into a contiguous second copy, then save
    np.save(dst, np.ascontiguousarray(np.load(src).transpose(0, 3, 1, 2)))
    fsync(dst)
elif method in ("naive_npz", "naive_npz_compressed"):
    with np.load(src) as d:
        arrays = {
            k: np.ascontiguousarray(d[k].transpose(0, 3, 1, 2)) if d[k].ndim == 4 else d[k]
            for k in d.files
        }
    (np.savez_compressed if method.endswith("compressed") else np.savez)(dst, **arrays)
    fsync(dst)
elif method in ("kmx", "kmx_base"):
    convert_file(src, dst)
else:
    raise SystemExit("unknown method " + method)
seconds = time.perf_counter() - t
r1 = resource.getrusage(resource.RUSAGE_SELF)  # all threads; cp's own time is a child's
cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
rss_mb = r1.ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mb": rss_mb}))
"""


ROOT = Path(__file__).resolve().parent.parent  # so `import kmx_tune` finds this checkout


def run(method: str, src: Path, dst: Path) -> dict[str, float]:
    dst.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, method, str(src), str(dst)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    dst.unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


def make_inputs(
    folder: Path, mb: int, compressed_mb: int, fortran: bool = False, members: int = 0
) -> dict[str, Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    n = max(1, mb * 1_000_000 // (96 * 96 * 3))
    x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
    files = {"npy": folder / f"x{mb}.npy", "npz": folder / f"x{mb}.npz"}
    np.save(files["npy"], x)
    np.savez(files["npz"], x=x, y=np.arange(n))
    if fortran:
        files["npy_fortran"] = folder / f"f{mb}.npy"
        np.save(files["npy_fortran"], np.asfortranarray(x))
    del x
    if members:
        import zipfile

        files["npz_members"] = folder / f"m{members}.npz"
        one = np.zeros((2, 8, 8, 3), np.uint8)
        with zipfile.ZipFile(files["npz_members"], "w") as zf:
            for i in range(members):
                with zf.open(f"a{i}.npy", "w") as fh:
                    np.lib.format.write_array(fh, one)
    if compressed_mb:
        # image-like: smooth shapes on a dark background, some noise; compresses ~3:1
        n = max(1, compressed_mb * 1_000_000 // (96 * 96 * 3))
        yy, xx = np.mgrid[:96, :96]
        base = ((np.sin(yy / 9.0) + np.cos(xx / 13.0)) * 50 + 100).astype(np.uint8)
        z = np.empty((n, 96, 96, 3), np.uint8)
        for i in range(0, n, 1000):
            k = min(1000, n - i)
            noise = rng.integers(0, 24, (k, 96, 96, 3), dtype=np.uint8)
            z[i : i + k] = base[None, :, :, None] // 2 + noise
            z[i : i + k, :20] = 0
        files["npz_compressed"] = folder / f"z{compressed_mb}.npz"
        np.savez_compressed(files["npz_compressed"], x=z, y=np.arange(n))
    return files


def make_inputs_in_child(
    folder: Path, mb: int, compressed_mb: int, fortran: bool = False, members: int = 0
) -> dict[str, Path]:
    """Linux keeps a process's peak RSS across fork and exec: build the big arrays in a
    child, so the children that are measured start from a small parent."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import bench_convert as b; "
        "from pathlib import Path; "
        "print(json.dumps({k: str(v) for k, v in b.make_inputs(Path(sys.argv[2]), "
        "int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == '1', int(sys.argv[6])).items()}))"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(Path(__file__).parent),
            str(folder),
            str(mb),
            str(compressed_mb),
            "1" if fortran else "0",
            str(members),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {k: Path(v) for k, v in json.loads(out).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes", default="256,1024", help="uncompressed sizes in MB (default 256,1024)"
    )
    ap.add_argument("--compressed-mb", type=int, default=100, help="compressed case, MB of data")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to put the files (default: a temp folder)")
    ap.add_argument("--baseline", default=None, help="a folder holding the kmx_tune to compare")
    ap.add_argument("--fortran", action="store_true", help="add a Fortran-ordered .npy")
    ap.add_argument("--members", type=int, default=0, help="add an .npz of N small arrays")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive numpy methods")
    args = ap.parse_args()
    if args.baseline:
        base_dir = Path(args.baseline).resolve()
        if not (base_dir / "kmx_tune" / "__init__.py").is_file():
            ap.error(f"--baseline {base_dir}: no kmx_tune package there")
        os.environ["KMX_BENCH_BASE"] = str(base_dir)
    made_temp = args.dir is None
    base = Path(args.dir or tempfile.mkdtemp(prefix="kmx-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = []
    for i, mb in enumerate(sizes):
        first = i == 0
        files = make_inputs_in_child(
            base,
            mb,
            args.compressed_mb if first else 0,
            args.fortran and first,
            args.members if first else 0,
        )
        for kind, src in files.items():
            naive = {"npy_fortran": "naive_npy", "npz_members": "naive_npz"}.get(
                kind, "naive_npy" if kind == "npy" else f"naive_{kind}"
            )
            methods = ["kmx", naive] if kind == "npz_compressed" else ["cp", "kmx", naive]
            if kind == "npy":
                methods.append("naive_npy_contig")
            if args.no_naive or kind == "npz_members":
                methods = [m for m in methods if not m.startswith("naive")]
            if args.baseline:
                methods.append("kmx_base")
            times: dict[str, list[float]] = {m: [] for m in methods}
            cpus: dict[str, list[float]] = {m: [] for m in methods}
            rss: dict[str, float] = {m: 0.0 for m in methods}
            for r in range(args.rounds):
                order = methods[r % len(methods) :] + methods[: r % len(methods)]
                for m in order:
                    res = run(m, src, base / f"out{src.suffix}")
                    times[m].append(res["seconds"])
                    cpus[m].append(res["cpu"])
                    rss[m] = max(rss[m], res["rss_mb"])
            row: dict[str, object] = {
                "file": kind,
                "size_mb": round(src.stat().st_size / 1e6),
                "kmx_s": round(statistics.median(times["kmx"]), 2),
                "kmx_rss_mb": round(rss["kmx"]),
            }
            if naive in times:
                row["naive_s"] = round(statistics.median(times[naive]), 2)
                row["naive_over_kmx"] = round(
                    statistics.median(n / k for n, k in zip(times[naive], times["kmx"])), 2
                )
                row["naive_rss_mb"] = round(rss[naive])
            if "kmx_base" in times:
                ratios = sorted(k / b for k, b in zip(times["kmx"], times["kmx_base"]))
                row["base_s"] = round(statistics.median(times["kmx_base"]), 2)
                row["kmx_over_base"] = round(statistics.median(ratios), 2)
                row["kmx_over_base_range"] = [round(ratios[0], 2), round(ratios[-1], 2)]
                row["kmx_over_base_cpu"] = round(
                    statistics.median(k / b for k, b in zip(cpus["kmx"], cpus["kmx_base"])), 2
                )
                row["base_rss_mb"] = round(rss["kmx_base"])
            if "naive_npy_contig" in times:
                row["contig_s"] = round(statistics.median(times["naive_npy_contig"]), 2)
                row["contig_over_kmx"] = round(
                    statistics.median(
                        n / k for n, k in zip(times["naive_npy_contig"], times["kmx"])
                    ),
                    2,
                )
            if "cp" in times:
                row["cp_s"] = round(statistics.median(times["cp"]), 2)
                row["kmx_over_cp"] = round(
                    statistics.median(k / c for k, c in zip(times["kmx"], times["cp"])), 2
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
            src.unlink()
    if made_temp:
        base.rmdir()
    print()
    print("naive = np.load, transpose, np.save, fsync (the issue's baseline); for .npy,")
    print("contig = the same with np.ascontiguousarray before np.save (a stronger baseline)")
    print()
    print("| file | size | cp+fsync | kmx | naive | naive/kmx | kmx/cp | kmx RSS | naive RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['file']} | {r['size_mb']} MB | {r.get('cp_s', '-')} s | {r['kmx_s']} s | "
            f"{r.get('naive_s', '-')} s | {r.get('naive_over_kmx', '-')}x | "
            f"{r.get('kmx_over_cp', '-')}{'x' if 'kmx_over_cp' in r else ''} | "
            f"{r['kmx_rss_mb']} MB | {r.get('naive_rss_mb', '-')} MB |"
        )
    if args.baseline:
        print()
        print(f"baseline: {os.environ['KMX_BENCH_BASE']}")
        print(
            "| file | size | baseline | kmx | kmx/baseline wall (median, min-max) "
            "| kmx/baseline CPU | RSS base -> kmx |"
        )
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            lo, hi = r["kmx_over_base_range"]  # type: ignore[misc]
            print(
                f"| {r['file']} | {r['size_mb']} MB | {r['base_s']} s | {r['kmx_s']} s | "
                f"{r['kmx_over_base']}x ({lo}-{hi}) | {r['kmx_over_base_cpu']}x | "
                f"{r['base_rss_mb']} -> {r['kmx_rss_mb']} MB |"
            )
    for r in rows:
        if "contig_s" in r:
            print(
                f"{r['file']} {r['size_mb']} MB: contig {r['contig_s']} s, "
                f"contig/kmx {r['contig_over_kmx']}x"
            )


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
