"""The NVIDIA probe: driver, CUDA driver version and each GPU's compute capability,
through NVML (the ``pynvml`` module of nvidia-ml-py). Never raises: no module, no
library, no driver or an NVML error each become "no GPU" plus the reason."""

from __future__ import annotations

import contextlib
import sys
import warnings
from typing import Any

from kmx_tune.hardware.profile import GpuInfo, NvidiaInfo


def _text(value: Any) -> str:
    """NVML strings are bytes in old pynvml releases and str in new ones."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _import_pynvml() -> Any:
    with warnings.catch_warnings():
        # the `pynvml` shim package warns that nvidia-ml-py should be used instead;
        # both provide the same `pynvml` module
        warnings.simplefilter("ignore")
        import pynvml

    return pynvml


def _missing_nvml_library() -> str | None:
    """Why NVML cannot load, checked with one dlopen before importing pynvml (a large
    module, ~80 ms): on a box without the driver that is all the answer there is."""
    if not sys.platform.startswith("linux"):
        return None  # pynvml finds nvml.dll / reports the error itself
    import ctypes

    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return "no NVIDIA driver: libnvidia-ml.so.1 not found"
    return None


def _nvml_error_reason(exc: BaseException) -> str:
    kind = type(exc).__name__
    if kind == "NVMLError_LibraryNotFound":
        return "no NVIDIA driver: libnvidia-ml.so.1 not found"
    if kind == "NVMLError_DriverNotLoaded":
        return "the NVIDIA kernel driver is not loaded"
    if kind == "NVMLError_NoPermission":
        return "no permission to use the NVIDIA driver (NVML)"
    return f"NVML error: {kind}: {exc}"


def cuda_version_str(value: int) -> str:
    """13000 -> "13.0", 11080 -> "11.8" (NVML's nvmlSystemGetCudaDriverVersion)."""
    return f"{value // 1000}.{(value % 1000) // 10}"


def probe_nvidia(nvml: Any = None) -> tuple[NvidiaInfo | None, tuple[GpuInfo, ...], str | None]:
    """Driver, GPUs and, when none were found, why. Never raises."""
    if nvml is None:
        missing = _missing_nvml_library()
        if missing:
            return None, (), missing
        try:
            nvml = _import_pynvml()
        except Exception:
            return None, (), "the pynvml module is not installed (pip install nvidia-ml-py)"
    try:
        nvml.nvmlInit()
    except Exception as exc:
        return None, (), _nvml_error_reason(exc)
    try:
        try:
            driver = _text(nvml.nvmlSystemGetDriverVersion())
            cuda = cuda_version_str(int(nvml.nvmlSystemGetCudaDriverVersion()))
            nvidia = NvidiaInfo(driver_version=driver, cuda_driver_version=cuda)
            count = int(nvml.nvmlDeviceGetCount())
        except Exception as exc:
            return None, (), _nvml_error_reason(exc)
        gpus: list[GpuInfo] = []
        errors: list[str] = []
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
                gpus.append(
                    GpuInfo(
                        index=index,
                        name=_text(nvml.nvmlDeviceGetName(handle)),
                        compute_capability=f"{int(major)}.{int(minor)}",
                        memory_total_mib=int(nvml.nvmlDeviceGetMemoryInfo(handle).total)
                        // (1024 * 1024),
                    )
                )
            except Exception as exc:  # one broken GPU should not hide the others
                errors.append(f"GPU {index}: {_nvml_error_reason(exc)}")
        if gpus:
            return nvidia, tuple(gpus), None
        reason = "; ".join(errors) if errors else f"driver {driver} sees no GPU"
        return nvidia, (), reason
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()
