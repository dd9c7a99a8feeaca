"""One-line explanations of what can go wrong in a benchmark run: no mxnet or Keras in
the target, no usable GPU, a GPU the wheel has no kernels for, a batch too big for
memory, the user's model code failing."""

from __future__ import annotations

import shlex
import signal
from collections.abc import Mapping
from typing import Any

# Published MXNet CUDA wheels carry machine code up to sm_86 and no PTX
# (../shared/facts/mxnet-wheels.md, cuobjdump on mxnet-cu117 1.9.1), so on a newer
# GPU (H100/H200: 9.0, Blackwell: 10.x/12.x) every kernel launch fails with this.
NO_KERNEL_IMAGE = "no kernel image is available"

# How a --batch too big for this machine fails: MXNet's allocator, Python's, a shape
# past MXNet's 32-bit index type, or C++'s allocator aborting the process.
TOO_BIG = (
    "Failed to allocate",
    "MemoryError",
    "OverflowError",
    "std::bad_alloc",
    "larger than 2^31 elements",
)


def too_big(batch: int, detail: str) -> str:
    return (
        f"--batch {batch}: the benchmark's arrays do not fit in memory ({detail}); "
        "try a smaller --batch"
    )


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


def error_message(report: Mapping[str, Any], python: str, *, batch: int, model: str | None) -> str:
    """One line for an error a worker reported: what went wrong, and what to do."""
    kind = str(report.get("kind"))
    message = str(report.get("message"))
    version = report.get("mxnet_version")
    mxnet = f"mxnet {version}" if version else "MXNet"
    py = shlex.quote(python)
    if kind == "no_mxnet":
        return (
            f"mxnet cannot be imported in {python} ({message}); install it with "
            f"`kmx-tune install-mxnet --python {py}` and check the set-up with "
            f"`kmx-tune doctor --python {py}`"
        )
    if kind == "no_keras":
        return (
            f"--model {model}: Keras with the MXNet backend cannot be imported in {python} "
            f"({message}); install keras-mxnet there (`{py} -m pip install keras-mxnet`), "
            f"check with `kmx-tune doctor --python {py}`, or drop --model to time kmx-tune's "
            "own model"
        )
    if kind == "model":
        return f"--model {model}: {message}"
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
    if any(marker in message for marker in TOO_BIG):
        return too_big(batch, message)
    return f"the benchmark failed in {python} ({message}); run `kmx-tune doctor --python {py}`"


def died_message(stderr: str, status: int | None, python: str, *, batch: int) -> str:
    """One line for a worker that ended without a report: a CUDA failure can abort
    MXNet's engine, the kernel's OOM killer sends SIGKILL, bad_alloc aborts."""
    gpu = gpu_failure_message(stderr)
    if gpu is not None:
        return gpu
    tail = last_line(stderr, status)
    if any(marker in stderr for marker in TOO_BIG):
        return too_big(batch, tail)
    if status == -signal.SIGKILL:
        return (
            f"--batch {batch}: the benchmark was killed (SIGKILL), most likely by the "
            "system's out-of-memory killer; try a smaller --batch"
        )
    if "SyntaxError" in stderr:
        return (
            f"{python}: does not work as a Python 3.6+ interpreter (it is older than Python "
            "3.6, which kmx-tune needs)"
        )
    return f"the benchmark crashed in {python} ({tail})"


def last_line(stderr: str, status: int | None) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exit status {status}"
