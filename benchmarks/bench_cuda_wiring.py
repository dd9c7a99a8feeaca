"""What kmx-tune's CUDA library wiring and doctor's library check cost, each against a
baseline in the same run, the two forms alternating, medians of per-round ratios.

1. Interpreter start-up (``python -c pass``) in a venv with kmx-mxnet-cuda-libs
   installed (its .pth puts a finder in sys.meta_path) against the same venv without
   it: what every Python start in that environment pays, pip included.
2. The facts script doctor runs in the target (kmx_env_facts.py) with an MXNet
   distribution there (so it also resolves libmxnet.so's NEEDED entries like ld.so)
   against the same venv without one.

Fake libraries built with gcc stand in for the CUDA ones (the cost of the finder and
of the resolution does not depend on their size).

    python benchmarks/bench_cuda_wiring.py --rounds 41
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kmx_tune.flavors.cuda_libs import PIP, CudaLibs
from kmx_tune.install import cuda_wiring
from kmx_tune.target import IN_TARGET_DIR


def gcc(path: Path, source: str, *args: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_suffix(".c")
    src.write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(path), str(src), *args], check=True)


def venv(folder: Path) -> tuple[Path, Path]:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = next((folder / "lib").glob("python3*/site-packages"))
    return python, site


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def alternate(a: list[str], b: list[str], rounds: int, between=None) -> tuple[float, float, float]:  # noqa: ANN001
    """Median seconds of *a*, of *b*, and the median of per-round ratios a/b."""
    ta, tb = [], []
    for i in range(rounds + 2):
        for which in ((a, ta), (b, tb)) if i % 2 else ((b, tb), (a, ta)):
            if between:
                between(which[0] is a)
            which[1].append(timed(which[0]))
    ta, tb = ta[2:], tb[2:]  # warm-up
    return (
        statistics.median(ta),
        statistics.median(tb),
        statistics.median(x / y for x, y in zip(ta, tb)),
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=41)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kmx-bench-wiring-") as tmp:
        root = Path(tmp)
        wired, wired_site = venv(root / "wired")
        plain, plain_site = venv(root / "plain")
        for site in (wired_site, plain_site):
            gcc(site / "nvidia/fake/lib/libfake.so.1", "int f(void){return 1;}\n",
                "-Wl,-soname,libfake.so.1")  # fmt: skip
        libs = CudaLibs(PIP, ("libfake.so.1",), (), (("fake", "libfake.so.1"),), (), (), (),
                        "1.0+bench")  # fmt: skip
        wheel = cuda_wiring.build(libs, "mxnet==0", root / "wheels")
        subprocess.run([sys.executable, "-m", "pip", "--python", str(wired), "install", "-q",
                        "--no-deps", "--no-index", str(wheel)], check=True)  # fmt: skip

        a, b, ratio = alternate([str(wired), "-c", "pass"], [str(plain), "-c", "pass"], args.rounds)
        print(f"python -c pass: with the wiring {a * 1000:.1f} ms, without {b * 1000:.1f} ms, "
              f"ratio {ratio:.3f} (median of {args.rounds} alternating rounds)")  # fmt: skip

        # doctor's facts script, with and without an MXNet distribution to inspect
        gcc(plain_site / "mxnet/libmxnet.so", "int g(void){return 2;}\n", "-Wl,-rpath,$ORIGIN",
            "-Wl,-soname,libmxnet.so", "-lm")  # fmt: skip
        (plain_site / "mxnet/__init__.py").write_text("")
        info = plain_site / "mxnet-1.9.1.dist-info"
        hidden = plain_site / "mxnet-1.9.1.dist-info.off"
        hidden.mkdir()
        (hidden / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet\nVersion: 1.9.1\n\n")

        def toggle(with_mxnet: bool) -> None:
            if with_mxnet and hidden.exists():
                hidden.rename(info)
            elif not with_mxnet and info.exists():
                info.rename(hidden)

        facts = [str(plain), str(IN_TARGET_DIR / "kmx_env_facts.py")]
        a, b, ratio = alternate(list(facts), list(facts), args.rounds, between=toggle)
        print(f"kmx_env_facts.py: with an MXNet to resolve {a * 1000:.1f} ms, without "
              f"{b * 1000:.1f} ms, ratio {ratio:.3f} (+{(a - b) * 1000:.1f} ms)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
