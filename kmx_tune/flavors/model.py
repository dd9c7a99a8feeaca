"""What the advisor returns: a :class:`Choice` per wheel a box could get and the
:class:`Recommendation` (the pick, its fallbacks, the CUDA libraries, the environment),
and the platform keys of a hardware profile and of a target interpreter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kmx_tune.flavors.cuda_libs import CudaLibs
from kmx_tune.flavors.table import LINUX_X86_64, NUMPY_PIN, Wheel
from kmx_tune.hardware import HardwareProfile


@dataclass(frozen=True)
class Choice:
    """One wheel the box could get, with why and what to watch."""

    wheel: Wheel
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()  # variables MXNet must run with
    cuda_libs: CudaLibs | None = None

    @property
    def requirements(self) -> tuple[str, ...]:
        return requirements_for(self.wheel.name, self.wheel.version)


@dataclass(frozen=True)
class Recommendation:
    package: str  # "" when nothing installs on this platform
    version: str
    requirements: tuple[str, ...]
    reasons: tuple[str, ...]  # why this flavor, each saying where it came from
    warnings: tuple[str, ...]
    gpu: bool  # a CUDA flavor was chosen
    build_from_source: str | None  # the route when no wheel has kernels for the GPU
    platform: str = LINUX_X86_64
    candidates: tuple[Choice, ...] = ()  # the pick first, then the fallbacks, in order
    environment: Mapping[str, str] = field(default_factory=dict)
    cuda_libs: CudaLibs | None = None

    @property
    def installable(self) -> bool:
        return bool(self.package)

    @property
    def wheel(self) -> Wheel | None:
        return self.candidates[0].wheel if self.candidates else None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/recommendation/1",
            "platform": self.platform,
            "installable": self.installable,
            "package": self.package or None,
            "version": self.version or None,
            "requirements": list(self.requirements),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "gpu": self.gpu,
            "environment": dict(self.environment),
            "cuda_libs": None if self.cuda_libs is None else self.cuda_libs.to_json(),
            "build_from_source": self.build_from_source,
            "fallbacks": [c.wheel.requirement for c in self.candidates[1:]],
        }


def requirements_for(package: str, version: str) -> tuple[str, ...]:
    """pip requirement strings for one MXNet release: the pin and numpy's bound."""
    return (f"{package}=={version}", NUMPY_PIN)


def platform_of(hw: HardwareProfile) -> str:
    """The table's platform key for the box: "linux-x86_64", "macos-arm64", ..."""
    system = {"linux": "linux", "darwin": "macos", "win32": "windows", "windows": "windows"}.get(
        hw.os.lower(), hw.os.lower()
    )
    arch = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
        hw.arch.lower(), hw.arch.lower()
    )
    if system == "macos" and arch == "aarch64":
        arch = "arm64"
    return f"{system}-{arch}"


def platform_of_target(sys_platform: str, machine: str) -> str:
    """The table's platform key for an interpreter (its sys.platform and machine)."""
    system = "linux" if sys_platform.startswith("linux") else sys_platform
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine.lower())
    if system == "darwin" and arch == "aarch64":
        return "macos-arm64"
    return {"darwin": "macos", "win32": "windows"}.get(system, system) + f"-{arch}"
