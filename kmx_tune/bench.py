"""``kmx-tune bench``: what channels_first buys over channels_last with the MXNet
installed in the target, measured on this machine.

``_in_target/kmx_bench.py`` times a small convolution stack (forward and backward)
in both layouts inside the target interpreter and reports raw step times; this
module turns them into images/s, spreads and the ratio, and turns its failures
(no mxnet, no GPU, a GPU the wheel has no kernels for) into one-line errors.
"""

from __future__ import annotations

import json
import signal
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import FORMATS
from kmx_tune.target import Target, failure_tail

SCRIPT = "kmx_bench.py"  # in kmx_tune/_in_target/
DEFAULT_BATCH = 32
DEFAULT_REPEATS = 10
DEFAULT_WARMUP = 3
TIMEOUT_S = 900.0

# Published MXNet CUDA wheels carry machine code up to sm_86 and no PTX
# (../shared/facts/mxnet-wheels.md, cuobjdump on mxnet-cu117 1.9.1), so on a newer
# GPU (H100/H200: 9.0, Blackwell: 10.x/12.x) every kernel launch fails with this.
NO_KERNEL_IMAGE = "no kernel image is available"

# How a --batch too big for this machine fails: MXNet's allocator, Python's, or a
# shape that no longer fits MXNet's index type.
_TOO_BIG = ("Failed to allocate", "MemoryError", "OverflowError", "std::bad_alloc")


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q1, median, q3); with one value, all three are that value."""
    if len(values) < 2:
        v = values[0]
        return v, v, v
    q1, med, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, med, q3


@dataclass(frozen=True)
class FormStats:
    form: str  # channels_first | channels_last
    images_per_s: float  # median over the repeats
    q1: float  # interquartile range of images/s
    q3: float
    min: float
    max: float
    step_ms: float  # median time of one training step

    def to_json(self) -> dict[str, Any]:
        return {
            "form": self.form,
            "images_per_s": self.images_per_s,
            "iqr": [self.q1, self.q3],
            "min": self.min,
            "max": self.max,
            "step_ms": self.step_ms,
        }


@dataclass(frozen=True)
class BenchResult:
    python: str
    mxnet_version: str | None
    ctx: str
    batch: int
    image: tuple[int, int, int]  # height, width, channels of the input images
    channels: tuple[int, ...]  # filters of each convolution
    warmup: int
    repeats: int
    cpu_count: int | None
    omp_num_threads: str | None
    forms: tuple[FormStats, ...]
    ratio: float  # channels_first images/s over channels_last, median of paired repeats
    ratio_q1: float
    ratio_q3: float
    exit_code: int = 0

    def form(self, name: str) -> FormStats:
        for stats in self.forms:
            if stats.form == name:
                return stats
        raise KeyError(name)

    @property
    def verdict(self) -> str:
        spread = f"IQR {self.ratio_q1:.2f}-{self.ratio_q3:.2f}"
        if self.ratio_q1 > 1.0:
            return f"channels_first is {self.ratio:.2f}x as fast as channels_last ({spread})"
        if self.ratio_q3 < 1.0:
            return (
                f"channels_last is {1 / self.ratio:.2f}x as fast as channels_first here "
                f"(ratio {self.ratio:.2f}, {spread})"
            )
        return f"no clear difference: ratio {self.ratio:.2f} ({spread} spans 1.0)"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/bench/1",
            "python": self.python,
            "mxnet_version": self.mxnet_version,
            "ctx": self.ctx,
            "batch": self.batch,
            "image": list(self.image),
            "channels": list(self.channels),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "cpu_count": self.cpu_count,
            "omp_num_threads": self.omp_num_threads,
            "forms": {stats.form: stats.to_json() for stats in self.forms},
            "ratio": {"median": self.ratio, "iqr": [self.ratio_q1, self.ratio_q3]},
            "verdict": self.verdict,
        }


def form_stats(form: str, batch: int, times: Sequence[float]) -> FormStats:
    rates = [batch / t for t in times if t > 0]
    if not rates:
        raise KmxError(f"the benchmark reported no usable times for {form}")
    q1, med, q3 = _quartiles(rates)
    return FormStats(
        form=form,
        images_per_s=med,
        q1=q1,
        q3=q3,
        min=min(rates),
        max=max(rates),
        step_ms=statistics.median(times) * 1000.0,
    )


def result_from_report(python: str, report: Mapping[str, Any]) -> BenchResult:
    """Turn the in-target report (raw step times in seconds) into a BenchResult.
    Raises KmxError for a report that carries an error."""
    error = report.get("error")
    if error:
        raise KmxError(
            error_message(str(error.get("kind")), str(error.get("message")), python, report)
        )
    times = report.get("times") or {}
    batch = int(report["batch"])
    first, last = (list(times.get(form) or []) for form in FORMATS)
    forms = tuple(form_stats(name, batch, times.get(name) or []) for name in FORMATS)
    ratios = [cl / cf for cf, cl in zip(first, last) if cf > 0 and cl > 0]
    r_q1, r_med, r_q3 = _quartiles(ratios) if ratios else (0.0, 0.0, 0.0)
    image = report.get("image") or [0, 0, 0]
    return BenchResult(
        python=python,
        mxnet_version=report.get("mxnet_version"),
        ctx=str(report.get("ctx")),
        batch=batch,
        image=(int(image[0]), int(image[1]), int(image[2])),
        channels=tuple(int(c) for c in report.get("channels") or ()),
        warmup=int(report.get("warmup") or 0),
        repeats=int(report.get("repeats") or len(first)),
        cpu_count=report.get("cpu_count"),
        omp_num_threads=report.get("omp_num_threads"),
        forms=forms,
        ratio=r_med,
        ratio_q1=r_q1,
        ratio_q3=r_q3,
    )


def error_message(kind: str, message: str, python: str, report: Mapping[str, Any]) -> str:
    """One line: what went wrong in the target, and what to do."""
    version = report.get("mxnet_version")
    mxnet = f"mxnet {version}" if version else "MXNet"
    if kind == "no_mxnet":
        return (
            f"mxnet cannot be imported in {python} ({message}); install it with "
            f"`kmx-tune install-mxnet --python {python}` and check the set-up with "
            f"`kmx-tune doctor --python {python}`"
        )
    if kind == "cpu_build":
        return (
            f"--ctx gpu: the {mxnet} in {python} is a CPU-only build; install a CUDA "
            "flavor with `kmx-tune install-mxnet`, or measure with --ctx cpu"
        )
    if kind == "no_gpu":
        return (
            f"--ctx gpu: {mxnet} sees no usable GPU ({message}); check the driver with "
            "`kmx-tune doctor`, or measure with --ctx cpu"
        )
    gpu = gpu_failure_message(message, mxnet)
    if gpu is not None:
        return gpu
    if any(marker in message for marker in _TOO_BIG):
        return (
            f"--batch {report.get('batch')}: the benchmark's arrays do not fit in memory "
            f"({message}); try a smaller --batch"
        )
    return f"the benchmark failed in {python} ({message}); run `kmx-tune doctor --python {python}`"


def gpu_failure_message(text: str, mxnet: str = "MXNet") -> str | None:
    """The one-line explanation when *text* (an error or a stderr) shows the GPU's
    architecture is missing from the wheel; None otherwise."""
    if NO_KERNEL_IMAGE not in text:
        return None
    return (
        f"--ctx gpu: the installed {mxnet} wheel has no kernels for this GPU's architecture "
        '("no kernel image is available for execution on the device"; published wheels stop '
        "at sm_86, so H100/H200 and newer cannot run them): measure with --ctx cpu, or build "
        "MXNet from source for this GPU"
    )


def run_bench(
    target: Target,
    *,
    ctx: str = "cpu",
    batch: int = DEFAULT_BATCH,
    repeats: int = DEFAULT_REPEATS,
    warmup: int = DEFAULT_WARMUP,
    size: int = 32,
) -> BenchResult:
    """Run the layout benchmark in the target interpreter."""
    if ctx not in ("cpu", "gpu"):
        raise UsageError(f"--ctx {ctx}: use cpu or gpu")
    for name, value, low in (("--batch", batch, 1), ("--repeats", repeats, 1), ("size", size, 4)):
        if value < low:
            raise UsageError(f"{name} {value}: must be at least {low}")
    if warmup < 0:
        raise UsageError(f"warmup {warmup}: must be 0 or more")
    args = [
        "--ctx",
        ctx,
        "--batch",
        str(batch),
        "--repeats",
        str(repeats),
        "--warmup",
        str(warmup),
        "--size",
        str(size),
    ]
    proc = target.run_script(
        SCRIPT,
        args,
        timeout=TIMEOUT_S,
        timeout_message=f"the benchmark took longer than {TIMEOUT_S:.0f} s; try a smaller --batch",
    )
    report = _last_json(proc.stdout)
    if report is None:
        # The process died without a report: a CUDA failure can abort MXNet's engine.
        gpu = gpu_failure_message(proc.stderr)
        if gpu is not None:
            raise KmxError(gpu)
        if any(marker in proc.stderr for marker in _TOO_BIG):
            raise KmxError(
                f"--batch {batch}: the benchmark's arrays do not fit in memory "
                f"({failure_tail(proc)}); try a smaller --batch"
            )
        if proc.returncode == -signal.SIGKILL:
            raise KmxError(
                f"--batch {batch}: the benchmark was killed (SIGKILL), most likely by the "
                "system's out-of-memory killer; try a smaller --batch"
            )
        raise KmxError(f"the benchmark crashed in {target.python} ({failure_tail(proc)})")
    return result_from_report(target.python, report)


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
    return None
