"""What `kmx-tune profile` costs: the same small training script run plain
(`python train.py`) and under `kmx-tune profile`, alternating, several rounds.

Reports, as medians over the rounds:
- wall time of the whole process (includes importing mxnet, ~2 s, and writing the
  trace and statistics);
- time of the training loop itself, measured inside the script, which is what the
  profiler slows down (every operator is timed and, with bulk execution off,
  scheduled one by one).

Measured here (mxnet 1.9.1 CPU wheel, Python 3.11, 2 CPU cores shared with other
jobs, load average ~3.5; 9 rounds, 20 steps of batch 16, OMP_NUM_THREADS=1):
    whole process: plain 6.01 s, profiled 6.10 s -> 1.12x (IQR 1.03-1.20)
    training loop: plain 2.482 s, profiled 2.538 s -> 1.04x (IQR 0.85-1.19;
                   124.1 vs 126.9 ms/step)
    trace file: 1.0 MB
i.e. the per-step cost of profiling is within this machine's noise; the whole run
pays for starting kmx-tune and writing the trace and statistics.

Usage:
    python benchmarks/bench_profile_overhead.py --python /path/to/venv-with-mxnet/bin/python
        [--rounds 5] [--steps 30] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A Keras-MXNet-like step: a symbolic graph bound once, channels_last transposes
# around each convolution, forward + backward; the loop time goes to stderr.
TRAIN = """\
import json, sys, time
import mxnet as mx

steps, batch = int(sys.argv[1]), int(sys.argv[2])
x = mx.sym.var("data")
cin = 3
for i, cout in enumerate((32, 64, 64)):
    w = mx.sym.var("w%d" % i, shape=(cout, cin, 3, 3))
    b = mx.sym.var("b%d" % i, shape=(cout,))
    x = mx.sym.transpose(x, axes=(0, 3, 1, 2))
    x = mx.sym.Convolution(x, weight=w, bias=b, kernel=(3, 3), pad=(1, 1), num_filter=cout)
    x = mx.sym.transpose(x, axes=(0, 2, 3, 1))
    x = mx.sym.Activation(x, act_type="relu")
    cin = cout
loss = mx.sym.make_loss(mx.sym.mean(x))
exe = loss.simple_bind(mx.cpu(), data=(batch, 32, 32, 3))
for name, arr in exe.arg_dict.items():
    arr[:] = mx.nd.random.uniform(-0.1, 0.1, shape=arr.shape)
exe.forward(is_train=True); exe.backward(); mx.nd.waitall()  # warm-up
start = time.perf_counter()
for _ in range(steps):
    exe.forward(is_train=True)
    exe.backward()
mx.nd.waitall()
sys.stderr.write("LOOP_S=%r\\n" % (time.perf_counter() - start))
"""


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    loop = next(
        float(line.split("=", 1)[1])
        for line in proc.stderr.splitlines()
        if line.startswith("LOOP_S=")
    )
    return wall, loop


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", required=True, help="a Python with mxnet installed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument(
        "--threads",
        default="1",
        help="OMP_NUM_THREADS for both runs (default 1: steadier on a shared machine; "
        "'' leaves it unset)",
    )
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    env = dict(os.environ)
    if opts.threads:
        env["OMP_NUM_THREADS"] = opts.threads

    with tempfile.TemporaryDirectory(prefix="kmx-overhead-") as tmp:
        work = Path(tmp)
        (work / "train.py").write_text(TRAIN)
        args = ["train.py", str(opts.steps), str(opts.batch)]
        plain = [opts.python, *args]
        # --force: each round replaces the trace of the one before
        profiled = [sys.executable, "-m", "kmx_tune", "profile", "--force", "--python", opts.python]
        profiled += args
        walls: dict[str, list[float]] = {"plain": [], "profiled": []}
        loops: dict[str, list[float]] = {"plain": [], "profiled": []}
        for r in range(opts.rounds):
            order = [("plain", plain), ("profiled", profiled)]
            if r % 2:
                order.reverse()
            for name, cmd in order:
                wall, loop = run(cmd, work, env)
                walls[name].append(wall)
                loops[name].append(loop)
        trace_mb = (work / "train.profile.json").stat().st_size / 1e6

    med = {k: statistics.median(v) for k, v in walls.items()}
    lmed = {k: statistics.median(v) for k, v in loops.items()}
    # ratios of the two runs of each round: robust to the machine's load drifting
    wall_r = quartiles([p / q for p, q in zip(walls["profiled"], walls["plain"])])
    loop_r = quartiles([p / q for p, q in zip(loops["profiled"], loops["plain"])])
    result = {
        "rounds": opts.rounds,
        "steps": opts.steps,
        "batch": opts.batch,
        "omp_num_threads": opts.threads or None,
        "wall_s": med,
        "wall_ratio": wall_r[1],
        "wall_ratio_iqr": [wall_r[0], wall_r[2]],
        "loop_s": lmed,
        "loop_ratio": loop_r[1],
        "loop_ratio_iqr": [loop_r[0], loop_r[2]],
        "per_step_ms": {k: v * 1000 / opts.steps for k, v in lmed.items()},
        "trace_mb": trace_mb,
    }
    if opts.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{opts.rounds} rounds, {opts.steps} steps of batch {opts.batch} "
        "(3 conv layers, channels_last transposes, forward+backward), "
        f"OMP_NUM_THREADS={opts.threads or 'unset'}; medians, profiled/plain per round:"
    )
    print(
        f"  whole process: plain {med['plain']:.2f} s, profiled {med['profiled']:.2f} s "
        f"-> {wall_r[1]:.2f}x (IQR {wall_r[0]:.2f}-{wall_r[2]:.2f})"
    )
    print(
        f"  training loop: plain {lmed['plain']:.3f} s, profiled {lmed['profiled']:.3f} s "
        f"-> {loop_r[1]:.2f}x (IQR {loop_r[0]:.2f}-{loop_r[2]:.2f}; "
        f"{result['per_step_ms']['plain']:.1f} vs {result['per_step_ms']['profiled']:.1f} "
        "ms/step)"
    )
    print(f"  trace file: {trace_mb:.1f} MB")


if __name__ == "__main__":
    main()
