"""The hardware profile: frozen dataclasses for the CPU, the NVIDIA driver and the
GPUs, and their JSON form (``kmx-tune probe --json``), read back with every field
checked, so that a hand-edited or foreign file gets one line naming the bad field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmx_tune.errors import UsageError

SCHEMA = "kmx-tune/hardware/1"

# ISA extensions that matter for MXNet's CPU kernels (MKL-DNN / oneDNN picks its
# code path from these), shown by `probe` in this order.
ISA_FLAGS: tuple[str, ...] = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512cd",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)


@dataclass(frozen=True)
class CpuInfo:
    vendor: str  # "GenuineIntel", "AuthenticAMD", or "unknown"
    brand: str
    flags: tuple[str, ...]  # lower-case, sorted, as /proc/cpuinfo spells them
    logical_cores: int
    physical_cores: int | None  # None when /proc/cpuinfo has no topology
    cgroup_cpu_limit: float | None  # CPUs a cgroup quota allows this process, None if unlimited
    usable_cores: int | None = None  # CPUs this process may run on (sched_getaffinity)

    @property
    def isa(self) -> tuple[str, ...]:
        """The ISA extensions from ISA_FLAGS that this CPU has."""
        present = set(self.flags)
        return tuple(flag for flag in ISA_FLAGS if flag in present)

    @property
    def effective_cores(self) -> int:
        """Cores worth one OpenMP thread each: physical cores, capped by the CPUs this
        process may use (affinity) and by a cgroup quota."""
        cores = self.physical_cores or self.logical_cores
        if self.usable_cores:
            cores = min(cores, self.usable_cores)
        if self.cgroup_cpu_limit:
            cores = min(cores, max(1, int(self.cgroup_cpu_limit)))
        return max(1, cores)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "9.0"
    memory_total_mib: int

    @property
    def capability(self) -> tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass(frozen=True)
class NvidiaInfo:
    driver_version: str  # "580.159.04"
    cuda_driver_version: str  # newest CUDA the driver supports: "13.0"


@dataclass(frozen=True)
class HardwareProfile:
    os: str
    arch: str
    cpu: CpuInfo
    nvidia: NvidiaInfo | None
    gpus: tuple[GpuInfo, ...]
    gpu_reason: str | None  # why no GPU was found ("no NVIDIA driver: libnvidia-ml.so.1 ...")
    source: str  # "probed", "cached" (CPU facts from the cache), or "file: PATH"
    file: str | None = None  # the --hardware FILE this profile was read from

    @property
    def origin(self) -> str:
        """How advice cites these facts: "detected", or "profile FILE" for --hardware."""
        return "detected" if self.file is None else f"profile {self.file}"

    @property
    def gpu_summary(self) -> str:
        """One line for advice: "detected: driver 535.104, compute capability 8.6"."""
        if not self.gpus:
            return f"no NVIDIA GPU found ({self.gpu_reason or 'unknown reason'})"
        caps = ", ".join(sorted({g.compute_capability for g in self.gpus}))
        names = ", ".join(sorted({g.name for g in self.gpus}))
        driver = self.nvidia.driver_version if self.nvidia else "unknown"
        return f"driver {driver}, {len(self.gpus)}x {names}, compute capability {caps}"

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "os": self.os,
            "arch": self.arch,
            "cpu": {
                "vendor": self.cpu.vendor,
                "brand": self.cpu.brand,
                "flags": list(self.cpu.flags),
                "logical_cores": self.cpu.logical_cores,
                "physical_cores": self.cpu.physical_cores,
                "usable_cores": self.cpu.usable_cores,
                "cgroup_cpu_limit": self.cpu.cgroup_cpu_limit,
                "isa": list(self.cpu.isa),
            },
            "nvidia": None
            if self.nvidia is None
            else {
                "driver_version": self.nvidia.driver_version,
                "cuda_driver_version": self.nvidia.cuda_driver_version,
            },
            "gpus": [
                {
                    "index": g.index,
                    "name": g.name,
                    "compute_capability": g.compute_capability,
                    "memory_total_mib": g.memory_total_mib,
                }
                for g in self.gpus
            ],
            "gpu_reason": self.gpu_reason,
        }

    @classmethod
    def from_json(cls, data: Any, file: str | None = None) -> HardwareProfile:
        """Read a profile written by ``kmx-tune probe --json``. Raises UsageError
        naming the first field that is missing or wrong."""
        if not isinstance(data, Mapping):
            raise UsageError("a hardware profile must be a JSON object")
        schema = data.get("schema")
        if schema != SCHEMA:
            raise UsageError(
                f"schema is {schema!r}, expected {SCHEMA!r}; write the profile with "
                "`kmx-tune probe --json > FILE`"
            )
        cpu = _get(data, "cpu", Mapping, "an object")
        logical = _count(_get(cpu, "logical_cores", int, "a whole number", "cpu."), "cpu.")
        cpu_info = CpuInfo(
            vendor=str(_get(cpu, "vendor", str, "a string", "cpu.")),
            brand=str(_get(cpu, "brand", str, "a string", "cpu.")),
            flags=tuple(sorted(str(f).lower() for f in _get(cpu, "flags", list, "a list", "cpu."))),
            logical_cores=logical,
            physical_cores=_opt_count(cpu, "physical_cores", "cpu."),
            cgroup_cpu_limit=_opt(cpu, "cgroup_cpu_limit", float, "a number", "cpu."),
            usable_cores=_opt_count(cpu, "usable_cores", "cpu."),
        )
        nv = _opt(data, "nvidia", Mapping, "an object or null")
        nvidia = (
            None
            if nv is None
            else NvidiaInfo(
                str(_get(nv, "driver_version", str, "a string", "nvidia.")),
                str(_get(nv, "cuda_driver_version", str, "a string", "nvidia.")),
            )
        )
        gpus = []
        for i, g in enumerate(_opt(data, "gpus", list, "a list") or ()):
            where = f"gpus[{i}]."
            if not isinstance(g, Mapping):
                raise _field_error(f"gpus[{i}]", "must be an object")
            index = int(_get(g, "index", int, "a whole number", where))
            name = str(_get(g, "name", str, "a string", where))
            raw_cap = _get(g, "compute_capability", object, "", where)
            try:
                capability = _capability_str(raw_cap)
            except (TypeError, ValueError):
                raise _field_error(f"{where}compute_capability", "must look like 8.6") from None
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name,
                    compute_capability=capability,
                    memory_total_mib=int(_get(g, "memory_total_mib", int, "a whole number", where)),
                )
            )
        if gpus and nvidia is None:
            raise UsageError(
                "the profile lists GPUs but no 'nvidia' driver; write it again with "
                "`kmx-tune probe --json > FILE`"
            )
        reason = data.get("gpu_reason")
        if not gpus and reason is None:
            reason = "the profile lists no GPU"
        return cls(
            os=str(_get(data, "os", str, "a string")),
            arch=str(_get(data, "arch", str, "a string")),
            cpu=cpu_info,
            nvidia=nvidia,
            gpus=tuple(gpus),
            gpu_reason=None if gpus else str(reason),
            source="file" if file is None else f"file: {file}",
            file=file,
        )


_FIX = "write the profile again with `kmx-tune probe --json > FILE`"


def _field_error(name: str, problem: str) -> UsageError:
    return UsageError(f"field {name!r} {problem}; {_FIX}")


def _get(data: Mapping[str, Any], key: str, kind: type, what: str, prefix: str = "") -> Any:
    """data[key], which must be of *kind* (bool is not a number here)."""
    if key not in data:
        raise _field_error(prefix + key, "is missing")
    value = data[key]
    wrong_bool = isinstance(value, bool) and kind in (int, float)
    number = kind is float and isinstance(value, int)
    if wrong_bool or not (isinstance(value, kind) or number):
        raise _field_error(prefix + key, f"must be {what}, not {json.dumps(value)[:40]}")
    return value


def _opt(data: Mapping[str, Any], key: str, kind: type, what: str, prefix: str = "") -> Any:
    if data.get(key) is None:
        return None
    return _get(data, key, kind, what, prefix)


def _count(value: int, prefix: str, key: str = "logical_cores") -> int:
    if value < 1:
        raise _field_error(prefix + key, "must be at least 1")
    return value


def _opt_count(data: Mapping[str, Any], key: str, prefix: str) -> int | None:
    value = _opt(data, key, int, "a whole number or null", prefix)
    return None if value is None else _count(value, prefix, key)


def _capability_str(value: Any) -> str:
    """ "9.0" from "9.0", 9.0, (9, 0) or [9, 0]."""
    if isinstance(value, (list, tuple)):
        major, minor = value
        return f"{int(major)}.{int(minor)}"
    text = str(value)
    major, _, minor = text.partition(".")
    return f"{int(major)}.{int(minor or 0)}"
