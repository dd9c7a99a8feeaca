"""What the hardened in-target runs and the default target cost, in one run, alternating:

1. the facts script (``kmx_env_facts.py``) in the target, through kmx-tune's
   ``run_script`` (its own process group, output read by threads with a bound) against
   the baseline it replaced, ``subprocess.run(capture_output=True)``: per-pair ratio;
2. finding the default target and a Python 3.6-3.9 for keras-mxnet (the first run's
   extra work): ``Target.find(None)``, and ``find_keras_python()`` running its candidate
   and answering from the cache;
3. a target that floods stdout (``yes``): peak memory of a process that runs it through
   ``run_script`` (stops at 16 MiB) against the baseline stopped by a 0.5 s timeout.

4. with ``--against TREE`` (another checkout of kmx-tune, e.g. ``git worktree add
   /tmp/base main``): a warm ``kmx-tune doctor --python PY`` from each tree, alternating,
   as fresh processes; per-pair ratio this tree / TREE.

    python benchmarks/bench_target.py -n 21 --against /tmp/base
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kmx_tune.interpreters import find_keras_python, probe  # noqa: E402
from kmx_tune.target import IN_TARGET_DIR, Target, run_script  # noqa: E402

FACTS = "kmx_env_facts.py"

_FLOOD = """
import resource, subprocess, sys
sys.path.insert(0, {root!r})
from kmx_tune.target import run_script
fake = {fake!r}
if sys.argv[1] == "kmx-tune":
    try:
        run_script(fake, "kmx_env_facts.py")
    except Exception as exc:
        print(type(exc).__name__, str(exc)[:60], file=sys.stderr)
else:
    try:
        subprocess.run([fake], capture_output=True, timeout=0.5)
    except subprocess.TimeoutExpired as exc:
        print("TimeoutExpired after", len(exc.stdout or b""), "bytes", file=sys.stderr)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def baseline(python: str) -> None:
    subprocess.run(
        [python, str(IN_TARGET_DIR / FACTS)], capture_output=True, text=True, timeout=120
    )


def hardened(python: str) -> None:
    run_script(python, FACTS)


def timed(fn: object, *args: str) -> float:
    start = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="the target interpreter")
    parser.add_argument("-n", "--repeat", type=int, default=21)
    parser.add_argument("--against", metavar="TREE", help="another checkout to compare doctor with")
    opts = parser.parse_args()
    load = os.getloadavg()[0]

    base_t: list[float] = []
    new_t: list[float] = []
    for i in range(opts.repeat):
        order = [(baseline, base_t), (hardened, new_t)]
        if i % 2:
            order.reverse()
        for fn, into in order:
            into.append(timed(fn, opts.python))
    ratios = [n / b for n, b in zip(new_t, base_t)]
    q = statistics.quantiles(ratios, n=4)
    print(f"load average before: {load:.2f} on {os.cpu_count()} CPUs; target {opts.python}")
    print(
        f"facts script, median of {opts.repeat}: subprocess.run {statistics.median(base_t):.3f} s, "
        f"run_script {statistics.median(new_t):.3f} s; ratio run_script/baseline "
        f"{statistics.median(ratios):.2f} (IQR {q[0]:.2f}-{q[2]:.2f})"
    )

    find_t = [timed(lambda: Target.find(None)) for _ in range(opts.repeat)]
    cold_t = [timed(lambda: find_keras_python(run=probe)) for _ in range(opts.repeat)]
    found = find_keras_python()  # fills the cache
    warm_t = [timed(find_keras_python) for _ in range(opts.repeat)]
    print(
        f"Target.find(None): median {statistics.median(find_t) * 1000:.1f} ms; "
        f"find_keras_python(): {statistics.median(cold_t) * 1000:.1f} ms running the candidate, "
        f"{statistics.median(warm_t) * 1000:.1f} ms from the cache "
        f"(found {found.describe() if found else 'none'})"
    )

    with tempfile.TemporaryDirectory() as tmp:
        fake = Path(tmp) / "flood"
        fake.write_text("#!/bin/sh\nexec yes\n")
        fake.chmod(0o755)
        code = _FLOOD.format(root=str(ROOT), fake=str(fake))
        for which in ("kmx-tune", "baseline"):
            proc = subprocess.run(
                [sys.executable, "-c", code, which], capture_output=True, text=True, check=True
            )
            print(
                f"flooding target, {which}: peak RSS {proc.stdout.strip()} MiB "
                f"({proc.stderr.strip()})"
            )
    _ = resource  # the child processes report their own peak RSS
    if opts.against:
        compare_doctor(Path(opts.against), opts.python, opts.repeat)
    return 0


def compare_doctor(base_tree: Path, python: str, repeat: int) -> None:
    """A warm `kmx-tune doctor --python PY`, this tree against *base_tree*, alternating."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "KMX_TUNE_CACHE_DIR": cache}

        def run(tree: Path) -> float:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kmx_tune", "doctor", "--python", python],
                env={**env, "PYTHONPATH": str(tree)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tempfile.gettempdir(),
                check=False,
            )
            return time.perf_counter() - start

        run(base_tree), run(ROOT)  # warm the caches (CPU facts, the finder)
        base_t: list[float] = []
        ours: list[float] = []
        for i in range(repeat):
            order = [(base_tree, base_t), (ROOT, ours)]
            for tree, into in order if i % 2 == 0 else reversed(order):
                into.append(run(tree))
    ratios = [o / b for o, b in zip(ours, base_t)]
    q = statistics.quantiles(ratios, n=4)
    print(
        f"warm doctor --python {python}: {base_tree} {statistics.median(base_t):.3f} s, "
        f"this tree {statistics.median(ours):.3f} s; ratio {statistics.median(ratios):.2f} "
        f"(IQR {q[0]:.2f}-{q[2]:.2f}); load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
