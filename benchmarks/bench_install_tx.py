"""What the install transaction costs, measured in one run, alternating, on real wheels
offline (a folder of wheels from pip's cache, ``--no-index --find-links``):

- ``pip``: what a user would do by hand: ``pip uninstall -y mxnet-native`` then
  ``pip install mxnet==1.9.1 'numpy<1.24'`` (no way back, no check);
- ``kmx-tune``: ``kmx-tune install-mxnet --yes``: plan, availability check, resolve
  the complete install, keep the way back (a wheel of each distribution that will
  change, fsynced, with a journal), uninstall, install, verify in a fresh process;

each on a fresh copy of the same venv (real mxnet-native 1.8.0.post0 + numpy 1.23.5).
It reports the medians, the median of the per-round ratios kmx-tune/pip, how long
kmx-tune takes before its first change (the safety prelude), the size of the kit, and
-- with ``--rollbacks N`` -- how long a rollback takes after a SIGTERM that arrives
right after pip removed mxnet-native's dist-info (signal to exit).

    python benchmarks/bench_install_tx.py --rounds 5 --rollbacks 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
EPYC = HERE.parent / "tests" / "fixtures" / "hardware" / "epyc-no-gpu" / "kmx-profile.json"
NATIVE = ["mxnet-native==1.8.0.post0", "numpy==1.23.5"]


def pip(python: Path, *args: str) -> None:
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([str(python), "-m", "pip", "-q", *args], check=True, env=env)


def site(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def by_hand(python: Path, wheels: Path) -> float:
    start = time.perf_counter()
    pip(python, "uninstall", "-y", "mxnet-native")
    pip(python, "install", "--no-index", "--find-links", str(wheels), "mxnet==1.9.1", "numpy<1.24")
    return time.perf_counter() - start


def kmx_tune(
    python: Path, wheels: Path, *, sigterm_after_uninstall: bool = False
) -> tuple[float, float, int, float | None]:
    """(wall s, s until the first change, kit bytes, s from SIGTERM to exit)."""
    cmd = [
        sys.executable, "-m", "kmx_tune", "install-mxnet", "--python", str(python),
        "--hardware", str(EPYC), "--yes", "--no-index", "--find-links", str(wheels),
    ]  # fmt: skip
    dist_info = site(python.parent.parent) / "mxnet_native-1.8.0.post0.dist-info"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first_change: list[float] = []
    kit_bytes: list[int] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("> Keeping a way back in "):
                kit = Path(line[len("> Keeping a way back in ") :].split(": ", 1)[0])
            if line.startswith("> Uninstalling") and not first_change:
                first_change.append(time.perf_counter() - start)
                kit_bytes.append(sum(f.stat().st_size for f in kit.iterdir()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    rollback = None
    if sigterm_after_uninstall:
        while dist_info.exists() and proc.poll() is None:
            time.sleep(0.0005)
        signalled = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
        rollback = time.perf_counter() - signalled
        assert code == 128 + signal.SIGTERM, code
    else:
        code = proc.wait()
        assert code == 0, code
    reader.join()
    return time.perf_counter() - start, first_change[0], kit_bytes[0], rollback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rollbacks", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kmx-bench-install-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["KMX_TUNE_CACHE_DIR"] = str(tmp / "cache")
        wheels = tmp / "wheels"
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "-d", str(wheels), "mxnet==1.9.1", *NATIVE],
            check=True,
        )  # fmt: skip
        template = tmp / "template"
        subprocess.run([sys.executable, "-m", "venv", str(template)], check=True)
        pip(template / "bin" / "python", "install", *NATIVE)

        def fresh(name: str) -> Path:
            dest = tmp / name
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(template, dest, symlinks=True)
            return dest / "bin" / "python"

        rows: dict[str, list[float]] = {"pip": [], "kmx-tune": [], "prelude": []}
        ratios: list[float] = []
        kit = 0
        for i in range(args.rounds):
            order = ["pip", "kmx-tune"] if i % 2 == 0 else ["kmx-tune", "pip"]
            times = {}
            for method in order:
                python = fresh(method)
                if method == "pip":
                    times[method] = by_hand(python, wheels)
                else:
                    wall, prelude, kit, _ = kmx_tune(python, wheels)
                    times[method] = wall
                    rows["prelude"].append(prelude)
            rows["pip"].append(times["pip"])
            rows["kmx-tune"].append(times["kmx-tune"])
            ratios.append(times["kmx-tune"] / times["pip"])
            print(f"round {i + 1}: pip {times['pip']:.2f} s, kmx-tune {times['kmx-tune']:.2f} s")
        rollbacks = []
        for i in range(args.rollbacks):
            python = fresh("rollback")
            before = subprocess.run(
                [str(python), "-m", "pip", "list", "--format=freeze"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            _, _, _, rollback = kmx_tune(python, wheels, sigterm_after_uninstall=True)
            after = subprocess.run(
                [str(python), "-m", "pip", "list", "--format=freeze"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            assert after == before, "the rollback did not put everything back"
            assert rollback is not None
            rollbacks.append(rollback)
            print(f"rollback {i + 1}: {rollback:.2f} s from SIGTERM to exit, pip list as before")

    med = statistics.median
    print()
    print(f"pip by hand (uninstall + install), median    {med(rows['pip']):6.2f} s")
    print(f"kmx-tune install-mxnet --yes, median         {med(rows['kmx-tune']):6.2f} s")
    print(f"  of which before the first change, median   {med(rows['prelude']):6.2f} s")
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    print(f"kmx-tune / pip: median {med(ratios):.2f}x (IQR {q[0]:.2f}-{q[2]:.2f})")
    print(f"the kit (way back) kept during the install: {kit / 1e6:.1f} MB")
    if rollbacks:
        print(f"rollback after SIGTERM, median              {med(rollbacks):6.2f} s")


if __name__ == "__main__":
    main()
