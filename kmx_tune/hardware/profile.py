"""The hardware profile: frozen dataclasses for the CPU, the NVIDIA driver and the
GPUs, and their JSON form (``kmx-tune probe --json``), read back with every field
checked, so that a hand-edited or foreign file gets one line naming the bad field."""

from __future__ import annotations

import json
import math
import re
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
            raise UsageError(
                "a hardware profile must be a JSON object; write one with "
                "`kmx-tune probe --json > FILE`"
            )
        schema = data.get("schema")
        if schema != SCHEMA:
            raise UsageError(_not_a_profile(data, schema))
        cpu = _get(data, "cpu", Mapping, "an object")
        flags = _get(cpu, "flags", list, "a list", "cpu.")
        if not all(isinstance(f, str) for f in flags):
            raise _field_error("cpu.flags", "must be a list of strings")
        cpu_info = CpuInfo(
            vendor=str(_get(cpu, "vendor", str, "a string", "cpu.")),
            brand=str(_get(cpu, "brand", str, "a string", "cpu.")),
            flags=tuple(sorted(f.lower() for f in flags)),
            logical_cores=_count(_get(cpu, "logical_cores", int, "a whole number", "cpu."), "cpu."),
            physical_cores=_opt_count(cpu, "physical_cores", "cpu."),
            cgroup_cpu_limit=_cpu_limit(cpu),
            usable_cores=_opt_count(cpu, "usable_cores", "cpu."),
        )
        nv = _opt(data, "nvidia", Mapping, "an object or null")
        nvidia = (
            None
            if nv is None
            else NvidiaInfo(
                _version_field(nv, "driver_version", _DRIVER, "look like 535.104.05"),
                _version_field(nv, "cuda_driver_version", _CUDA, "look like 12.2"),
            )
        )
        gpus = []
        for i, g in enumerate(_opt(data, "gpus", list, "a list") or ()):
            where = f"gpus[{i}]."
            if not isinstance(g, Mapping):
                raise _field_error(f"gpus[{i}]", "must be an object")
            index = _bounded(g, "index", 0, MAX_GPUS - 1, where)
            name = str(_get(g, "name", str, "a string", where))
            raw_cap = _get(g, "compute_capability", object, "", where)
            try:
                capability = _capability_str(raw_cap)
            except (TypeError, ValueError):
                raise _field_error(
                    f"{where}compute_capability", "must look like 8.6 (major 1-99, minor 0-9)"
                ) from None
            gpus.append(
                GpuInfo(
                    index=index,
                    name=name,
                    compute_capability=capability,
                    memory_total_mib=_bounded(g, "memory_total_mib", 0, MAX_GPU_MIB, where),
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

# Bounds well past any real machine: beyond them a file is not a probe's output, and
# numbers that big would only make advice like OMP_NUM_THREADS=10**100.
MAX_CORES = 1 << 16
MAX_GPUS = 1024
MAX_GPU_MIB = 1 << 30  # 1 PiB
MAX_CPU_LIMIT = float(MAX_CORES)
_DRIVER = re.compile(r"\d{1,4}(\.\d{1,4}){0,3}")  # 580.159.04, 418.87.01, 535.104
_CUDA = re.compile(r"\d{1,3}(\.\d{1,3})?")  # 13.0, 11.8 (NVML's CUDA driver version)

# Keys of a raw capture (py-cpuinfo, NVML, lscpu, nvidia-smi output saved as JSON, as in
# the project's fixtures), which is not a profile but is easily taken for one.
_CAPTURE_KEYS = {
    "cpuinfo": "py-cpuinfo",
    "nvml": "NVML",
    "lscpu": "lscpu",
    "nvidia_smi_csv": "nvidia-smi",
    "nvidia_smi_header": "nvidia-smi",
}


def _not_a_profile(data: Mapping[str, Any], schema: Any) -> str:
    """Why *data* (a JSON object without the profile's schema) is not a profile: what
    the file seems to be, and what to do."""
    tools = list(dict.fromkeys(tool for key, tool in _CAPTURE_KEYS.items() if key in data))
    if schema is None and tools:
        return (
            f"is a raw hardware capture ({', '.join(tools)} output), not a kmx-tune profile; "
            "on the machine it describes, run `kmx-tune probe --json > FILE` and pass that file"
        )
    if schema is None:
        return (
            'is not a kmx-tune hardware profile (it has no "schema" key); write one with '
            "`kmx-tune probe --json > FILE`"
        )
    shown = json.dumps(schema, default=str)[:60]
    if isinstance(schema, str) and schema.startswith("kmx-tune/"):
        return (
            f"is a {shown} document, not a hardware profile ({SCHEMA}); write one with "
            "`kmx-tune probe --json > FILE`"
        )
    return f"has schema {shown}, expected {SCHEMA!r}; {_FIX}"


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
        raise _field_error(prefix + key, f"must be {what}, not {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _opt(data: Mapping[str, Any], key: str, kind: type, what: str, prefix: str = "") -> Any:
    if data.get(key) is None:
        return None
    return _get(data, key, kind, what, prefix)


def _count(value: int, prefix: str, key: str = "logical_cores") -> int:
    if value < 1:
        raise _field_error(prefix + key, "must be at least 1")
    if value > MAX_CORES:
        raise _field_error(prefix + key, f"must be at most {MAX_CORES}")
    return value


def _opt_count(data: Mapping[str, Any], key: str, prefix: str) -> int | None:
    value = _opt(data, key, int, "a whole number or null", prefix)
    return None if value is None else _count(value, prefix, key)


def _bounded(data: Mapping[str, Any], key: str, low: int, high: int, prefix: str) -> int:
    value: int = _get(data, key, int, "a whole number", prefix)
    if not low <= value <= high:
        raise _field_error(prefix + key, f"must be between {low} and {high}")
    return value


def _cpu_limit(cpu: Mapping[str, Any]) -> float | None:
    """cgroup_cpu_limit: null, or a finite number of CPUs above 0 (JSON files may hold
    Infinity and NaN, which Python's json reads)."""
    value = _opt(cpu, "cgroup_cpu_limit", float, "a number or null", "cpu.")
    if value is None:
        return None
    if not (math.isfinite(value) and 0 < value <= MAX_CPU_LIMIT):
        raise _field_error(
            "cpu.cgroup_cpu_limit", f"must be a number of CPUs above 0, or null, not {value}"
        )
    return float(value)


def _version_field(data: Mapping[str, Any], key: str, pattern: re.Pattern[str], looks: str) -> str:
    value: str = _get(data, key, str, "a string", "nvidia.")
    if not pattern.fullmatch(value):
        raise _field_error(f"nvidia.{key}", f"must {looks}, not {_shown(value)}")
    return value


def _capability_str(value: Any) -> str:
    """ "9.0" from "9.0", 9.0, (9, 0) or [9, 0]; ValueError for anything else, negative
    or out-of-range numbers included."""
    if isinstance(value, (list, tuple)):
        major, minor = value
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (major, minor)):
            raise ValueError(value)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        found = re.fullmatch(r"(\d{1,2})(?:\.(\d))?", str(value))
        if found is None:
            raise ValueError(value)
        major, minor = int(found.group(1)), int(found.group(2) or 0)
    else:
        raise ValueError(value)
    if not (1 <= major <= 99 and 0 <= minor <= 9):
        raise ValueError(value)
    return f"{major}.{minor}"
