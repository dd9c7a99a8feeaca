"""Start-up time of kmx-tune, measured in one run, alternating:

- ``kmx-tune --help``
- ``kmx-tune doctor`` cold: an empty cache folder, so py-cpuinfo runs (~1.2 s)
- ``kmx-tune doctor`` warm: the CPU facts come from the cache

Each is a fresh process, timed by wall clock; the medians are compared with the
targets from the issue (help <= 0.2 s, warm doctor <= 0.4 s, cold <= 1.6 s).
It also checks that neither command imports numpy or mxnet.

    python benchmarks/bench_startup.py                  # doctor on this Python
    python benchmarks/bench_startup.py --python ~/venvs/keras/bin/python -n 11
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"help": 0.2, "doctor_warm": 0.4, "doctor_cold": 1.6}

# Runs the CLI in-process and reports which heavy modules it imported.
_IMPORT_PROBE = """
import sys
from kmx_tune.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="kmx-tune", standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in ("numpy", "mxnet", "cpuinfo") if m in sys.modules)
sys.__stdout__.write("\\nIMPORTED=" + ",".join(heavy) + "\\n")
"""


def kmx_tune_command() -> list[str]:
    """The console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "kmx-tune"
    if script.exists():
        return [str(script)]
    found = shutil.which("kmx-tune")
    return [found] if found else [sys.executable, "-m", "kmx_tune"]


CPU: dict[str, list[float]] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str], key: str = "") -> float:
    """Wall seconds of one run; its CPU seconds (with its own children) go to CPU[key]."""
    cpu0 = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    CPU.setdefault(key, []).append(_children_cpu() - cpu0)
    if proc.returncode not in (0, 1):  # doctor exits 1 when a check fails: still timed
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def heavy_imports(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE, *args],
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    line = [x for x in out.splitlines() if x.startswith("IMPORTED=")]
    return line[-1].split("=", 1)[1] if line else "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", default=sys.executable, help="target for doctor")
    parser.add_argument("-n", "--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    opts = parser.parse_args()

    kmx = kmx_tune_command()
    doctor = [*kmx, "doctor", "--python", opts.python]
    base = dict(os.environ)
    base.pop("NO_COLOR", None)
    times: dict[str, list[float]] = {key: [] for key in TARGETS}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="kmx-bench-") as tmp:
        warm_env = {**base, "KMX_TUNE_CACHE_DIR": str(Path(tmp) / "warm")}
        timed(doctor, warm_env)  # fill the warm cache
        for i in range(opts.repeat):
            cold_env = {**base, "KMX_TUNE_CACHE_DIR": str(Path(tmp) / f"cold-{i}")}
            times["help"].append(timed([*kmx, "--help"], base, "help"))
            times["doctor_cold"].append(timed(doctor, cold_env, "doctor_cold"))
            times["doctor_warm"].append(timed(doctor, warm_env, "doctor_warm"))
        imports = {
            "help": heavy_imports(["--help"], warm_env),
            "doctor_warm": heavy_imports(["doctor", "--python", opts.python], warm_env),
        }

    medians = {key: statistics.median(values) for key, values in times.items()}
    cpu = {key: statistics.median(CPU[key]) for key in TARGETS}
    if opts.json:
        print(
            json.dumps(
                {"medians_s": medians, "cpu_s": cpu, "targets_s": TARGETS, "imports": imports}
            )
        )
    else:
        print(f"kmx-tune start-up, median of {opts.repeat} runs (fresh processes)")
        print(f"load average before: {load_before:.2f} on {os.cpu_count()} CPUs")
        print(f"command: {' '.join(kmx)}; doctor target: {opts.python}")
        for key, target in TARGETS.items():
            verdict = "ok" if medians[key] <= target else "OVER"
            print(
                f"  {key:<12} {medians[key]:6.3f} s wall (target {target:.1f} s: {verdict}; "
                f"min {min(times[key]):.3f}, max {max(times[key]):.3f}; CPU {cpu[key]:.3f} s)"
            )
        for key, heavy in imports.items():
            print(f"  {key:<12} imports numpy/mxnet/py-cpuinfo: {heavy or 'none'}")
    over = any(medians[k] > t for k, t in TARGETS.items())
    return 1 if over or any(imports.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
