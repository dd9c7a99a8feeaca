"""The CPU probe: py-cpuinfo (cached: it costs about 1.2 s a call), /proc/cpuinfo,
cgroup CPU quotas and the affinity mask. Never raises."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kmx_tune.fsio import atomic_write
from kmx_tune.hardware.profile import MAX_CORES, CpuInfo

CACHE_SCHEMA = "kmx-tune/cpu-cache/1"


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
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("schema") != CACHE_SCHEMA or data.get("key") != key:
        return None
    cpu = data.get("cpu")
    return cpu if _valid_cache(cpu) else None


def _valid_cache(cpu: Any) -> bool:
    """The cached facts have the types probe_cpu writes; anything else (a hand edit, a
    cache from a broken version) is ignored, probed again and written over."""
    if not isinstance(cpu, dict):
        return False
    count = cpu.get("logical_cores")
    flags = cpu.get("flags")
    return (
        isinstance(cpu.get("vendor"), str)
        and isinstance(cpu.get("brand"), str)
        and isinstance(flags, list)
        and all(isinstance(f, str) for f in flags)
        and isinstance(count, int)
        and not isinstance(count, bool)
        and 0 <= count <= MAX_CORES
    )


def _save_cache(path: Path, key: str, cpu: Mapping[str, Any]) -> None:
    """Write atomically; a cache that cannot be written is simply not used."""
    data = json.dumps({"schema": CACHE_SCHEMA, "key": key, "cpu": dict(cpu)})
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data.encode("utf-8"))


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
