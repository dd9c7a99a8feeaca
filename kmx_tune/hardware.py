"""The hardware probe: CPU (py-cpuinfo, /proc, cgroups) and NVIDIA driver and GPUs
(NVML through pynvml) -> a frozen HardwareProfile; load and save of its JSON.

The probe never raises. A missing pynvml module, a missing libnvidia-ml, an NVML
error or a missing /proc each become "no NVIDIA GPU found" plus the reason, and
the CPU part falls back to what the standard library knows.

py-cpuinfo costs about 1.2 s a call, so its stable part (vendor, brand, flags,
logical cores) is cached as JSON, keyed by the boot id and the machine's identity:
a reboot or another machine invalidates it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.errors import UsageError

SCHEMA = "kmx-tune/hardware/1"
CACHE_SCHEMA = "kmx-tune/cpu-cache/1"

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


# --------------------------------------------------------------------------- CPU


def parse_proc_cpuinfo(text: str) -> dict[str, Any]:
    """vendor, brand, flags and physical core count from /proc/cpuinfo text
    (x86 layout). physical_cores counts unique (physical id, core id) pairs."""
    vendor = brand = ""
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    processors = 0
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields:
            continue
        processors += 1
        vendor = vendor or fields.get("vendor_id", "")
        brand = brand or fields.get("model name", "")
        if not flags:
            flags = set(fields.get("flags", "").split())
        if "physical id" in fields and "core id" in fields:
            cores.add((fields["physical id"], fields["core id"]))
    return {
        "vendor": vendor,
        "brand": brand,
        "flags": sorted(flags),
        "logical_cores": processors,
        "physical_cores": len(cores) or None,
    }


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """CPUs a cgroup quota allows this process (e.g. 2.0 for "200000 100000"), the
    tightest along its cgroup path; None when no quota applies or nothing is readable.
    Reads cgroup v2 ``cpu.max`` and cgroup v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``."""
    cgroup_fs = root / "sys/fs/cgroup"
    v2_path = "/"
    v1_path = "/"
    try:
        for line in (root / "proc/self/cgroup").read_text().splitlines():
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            if hierarchy == "0" and controllers == "":
                v2_path = path or "/"
            elif "cpu" in controllers.split(","):
                v1_path = path or "/"
    except OSError:
        pass
    limits: list[float] = []
    for folder in _ancestors(cgroup_fs, v2_path):
        limit = _read_cpu_max(folder / "cpu.max")
        if limit is not None:
            limits.append(limit)
    for v1_root in (cgroup_fs / "cpu,cpuacct", cgroup_fs / "cpu"):
        for folder in _ancestors(v1_root, v1_path):
            limit = _read_cfs(folder)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """base/a/b, base/a, base for cgroup path /a/b (inside a container's cgroup
    namespace the path is often just /)."""
    parts = [p for p in cgroup_path.split("/") if p and p != ".."]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def _read_cpu_max(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _read_cfs(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
        period = int((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: no quota
        return None
    return quota / period


def usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return None


def cache_dir() -> Path:
    """$KMX_TUNE_CACHE_DIR, else $XDG_CACHE_HOME/kmx-tune, else ~/.cache/kmx-tune."""
    override = os.environ.get("KMX_TUNE_CACHE_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kmx-tune"


def machine_key(root: Path = Path("/")) -> str | None:
    """Identity of this boot of this machine, or None when there is no boot id
    (no /proc): then nothing is cached, because a stale cache could not be told apart."""
    try:
        boot_id = (root / "proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    if not boot_id:
        return None
    machine_id = ""
    for candidate in ("etc/machine-id", "var/lib/dbus/machine-id"):
        try:
            machine_id = (root / candidate).read_text().strip()
            break
        except OSError:
            continue
    parts = [boot_id, machine_id, socket.gethostname(), platform.machine(), sys.platform]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _cpu_from_cpuinfo_dict(info: Mapping[str, Any]) -> dict[str, Any]:
    """The stable, cacheable part of py-cpuinfo's get_cpu_info()."""
    return {
        "vendor": str(info.get("vendor_id_raw") or ""),
        "brand": str(info.get("brand_raw") or ""),
        "flags": sorted(str(f).lower() for f in info.get("flags") or ()),
        "logical_cores": int(info.get("count") or 0),
    }


def _load_cache(path: Path, key: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA or data.get("key") != key:
        return None
    cpu = data.get("cpu")
    return cpu if isinstance(cpu, dict) else None


def _save_cache(path: Path, key: str, cpu: Mapping[str, Any]) -> None:
    """Write atomically; a cache that cannot be written is simply not used."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cpu-", suffix=".json")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"schema": CACHE_SCHEMA, "key": key, "cpu": dict(cpu)}, handle)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _default_cpuinfo() -> dict[str, Any]:
    import cpuinfo  # py-cpuinfo: slow (~1.2 s), hence the cache

    result: dict[str, Any] = cpuinfo.get_cpu_info()
    return result


def probe_cpu(
    *,
    cpuinfo: Callable[[], Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    root: Path = Path("/"),
) -> tuple[CpuInfo, bool]:
    """The CPU, and whether its stable facts came from the cache. Never raises."""
    try:
        proc = parse_proc_cpuinfo((root / "proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        proc = None

    key = machine_key(root) if use_cache else None
    cache_file = cache_dir() / "cpu.json"
    stable = _load_cache(cache_file, key) if key else None
    cached = stable is not None
    if stable is None:
        try:
            stable = _cpu_from_cpuinfo_dict((cpuinfo or _default_cpuinfo)())
        except Exception:  # py-cpuinfo fails in odd sandboxes; /proc still answers
            stable = {"vendor": "", "brand": "", "flags": [], "logical_cores": 0}
        if proc:  # fill what py-cpuinfo left out
            for field in ("vendor", "brand", "flags", "logical_cores"):
                if not stable.get(field):
                    stable[field] = proc[field]
        if key:
            _save_cache(cache_file, key, stable)

    logical = int(stable.get("logical_cores") or 0) or os.cpu_count() or 1
    cpu = CpuInfo(
        vendor=str(stable.get("vendor") or "unknown"),
        brand=str(stable.get("brand") or platform.processor() or "unknown"),
        flags=tuple(sorted(stable.get("flags") or ())),
        logical_cores=logical,
        physical_cores=proc["physical_cores"] if proc else None,
        cgroup_cpu_limit=cgroup_cpu_limit(root),
        usable_cores=usable_cores(),
    )
    return cpu, cached


# ------------------------------------------------------------------------ NVIDIA


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


# ------------------------------------------------------------------------ public


def probe(
    *,
    nvml: Any = None,
    cpuinfo: Callable[[], Mapping[str, Any]] | None = None,
    use_cache: bool = True,
    root: Path = Path("/"),
) -> HardwareProfile:
    """Probe this machine. Never raises.

    *nvml*: a module with pynvml's API (tests inject a fake built from a capture);
    *cpuinfo*: a stand-in for py-cpuinfo's get_cpu_info; *root*: where /proc and /sys
    are (tests point it at a folder of captured files)."""
    cpu, cached = probe_cpu(cpuinfo=cpuinfo, use_cache=use_cache, root=root)
    nvidia, gpus, reason = probe_nvidia(nvml)
    return HardwareProfile(
        os=_os_name(),
        arch=_arch_name(),
        cpu=cpu,
        nvidia=nvidia,
        gpus=gpus,
        gpu_reason=reason,
        source="cached" if cached else "probed",
    )


def _os_name() -> str:
    return "linux" if sys.platform.startswith("linux") else sys.platform


def _arch_name() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine or "unknown")


def load_profile(path: str | os.PathLike[str]) -> HardwareProfile:
    """A profile saved by ``kmx-tune probe --json``. UsageError (one line) when the
    file is missing, not JSON, or not a profile."""
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"--hardware {where}: no such file; write one with `kmx-tune probe --json > {where}`"
        ) from None
    except IsADirectoryError:
        raise UsageError(
            f"--hardware {where}: is a folder; give the file written by "
            "`kmx-tune probe --json > FILE`"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise UsageError(
            f"--hardware {where}: cannot read it ({exc}); write it with "
            "`kmx-tune probe --json > FILE`"
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(
            f"--hardware {where}: not JSON ({exc}); write it with `kmx-tune probe --json`"
        ) from None
    try:
        return HardwareProfile.from_json(data, file=where)
    except UsageError as exc:
        raise UsageError(f"--hardware {where}: {exc}") from None


def get_hardware(hardware_file: str | os.PathLike[str] | None) -> HardwareProfile:
    """The profile from *hardware_file* if given, else this machine's."""
    if hardware_file is not None:
        return load_profile(hardware_file)
    return probe()
