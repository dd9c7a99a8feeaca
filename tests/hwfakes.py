"""The hardware seam for tests: a fake NVML module built from a real capture
(tests/fixtures/hardware/*/hw-profile.json, "nvml" key) and a fake root folder with
the captured /proc/cpuinfo. Nothing else in kmx-tune is faked."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kmx_tune.hardware import HardwareProfile, probe

HARDWARE = Path(__file__).parent / "fixtures" / "hardware"
CAPTURES = ("h100-intel-xeon", "epyc-no-gpu")


class NVMLError(Exception):
    """pynvml's base error class."""


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 -- pynvml's name
    pass


class NVMLError_DriverNotLoaded(NVMLError):  # noqa: N801 -- pynvml's name
    pass


_ERRORS = {
    "NVMLError_LibraryNotFound": NVMLError_LibraryNotFound,
    "NVMLError_DriverNotLoaded": NVMLError_DriverNotLoaded,
}


class FakeNvml:
    """pynvml's API, answering from a capture's "nvml" object:
    {"error": "NVMLError_LibraryNotFound(12)"} or {"driver_version", "cuda_driver_version",
    "devices": [{"name", "cuda_compute_capability", "memory_total"}, ...]}."""

    NVMLError = NVMLError

    def __init__(self, nvml: Mapping[str, Any]) -> None:
        self.data = nvml
        self.initialized = False
        self.shutdowns = 0

    def nvmlInit(self) -> None:  # noqa: N802 -- pynvml's name
        error = self.data.get("error")
        if error:
            name = error.split("(")[0]
            raise _ERRORS.get(name, NVMLError)(error)
        self.initialized = True

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shutdowns += 1

    def nvmlSystemGetDriverVersion(self) -> str:  # noqa: N802
        return str(self.data["driver_version"])

    def nvmlSystemGetCudaDriverVersion(self) -> int:  # noqa: N802
        return int(self.data["cuda_driver_version"])

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return len(self.data["devices"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Mapping[str, Any]:  # noqa: N802
        device: Mapping[str, Any] = self.data["devices"][index]
        if device.get("error"):
            raise NVMLError(device["error"])
        return device

    def nvmlDeviceGetName(self, handle: Mapping[str, Any]) -> bytes:  # noqa: N802
        return str(handle["name"]).encode()  # old pynvml returns bytes

    def nvmlDeviceGetCudaComputeCapability(self, handle: Mapping[str, Any]) -> tuple[int, int]:  # noqa: N802
        major, minor = handle["cuda_compute_capability"]
        return int(major), int(minor)

    def nvmlDeviceGetMemoryInfo(self, handle: Mapping[str, Any]) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=int(handle["memory_total"]), used=0, free=0)


def capture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((HARDWARE / name / "hw-profile.json").read_text())
    return data


def fake_root(name: str, tmp: Path) -> Path:
    """A folder laid out like / with the capture's /proc/cpuinfo and nothing else."""
    root = tmp / f"root-{name}"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "cpuinfo").write_text((HARDWARE / name / "proc-cpuinfo.txt").read_text())
    return root


def probe_capture(name: str, tmp: Path, nvml: Mapping[str, Any] | None = None) -> HardwareProfile:
    """What probe() reports on the captured machine (CPU, /proc/cpuinfo and NVML)."""
    data = capture(name)
    return probe(
        nvml=FakeNvml(nvml if nvml is not None else data["nvml"]),
        cpuinfo=lambda: data["cpuinfo"],
        use_cache=False,
        root=fake_root(name, tmp),
    )


def profile_path(name: str) -> Path:
    """A `kmx-tune probe --json` profile: captures in <machine>/kmx-profile.json,
    synthetic ones in synthetic/<name>.json."""
    if name in CAPTURES:
        return HARDWARE / name / "kmx-profile.json"
    return HARDWARE / "synthetic" / f"{name}.json"
