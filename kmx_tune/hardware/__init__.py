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

import json
import os
import platform
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kmx_tune.errors import UsageError
from kmx_tune.fsio import NotARegularFile, TooLarge, read_bounded
from kmx_tune.hardware import nvidia
from kmx_tune.hardware.cpu import cgroup_cpu_limit, parse_proc_cpuinfo, probe_cpu
from kmx_tune.hardware.profile import (
    ISA_FLAGS,
    SCHEMA,
    CpuInfo,
    GpuInfo,
    HardwareProfile,
    NvidiaInfo,
)

__all__ = [
    "ISA_FLAGS",
    "SCHEMA",
    "CpuInfo",
    "GpuInfo",
    "HardwareProfile",
    "NvidiaInfo",
    "cgroup_cpu_limit",
    "get_hardware",
    "load_profile",
    "parse_proc_cpuinfo",
    "probe",
    "probe_cpu",
    "probe_nvidia",
]


def probe_nvidia(nvml: Any = None) -> tuple[NvidiaInfo | None, tuple[GpuInfo, ...], str | None]:
    """The NVIDIA driver and GPUs (see :mod:`kmx_tune.hardware.nvidia`). Never raises."""
    return nvidia.probe_nvidia(nvml)


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


PROFILE_MAX_BYTES = 1 << 20  # a profile is a few KB; more is not one (or is /dev/zero)


def _read_profile(where: str) -> str:
    """The file's text, read without blocking on a FIFO and without reading past
    PROFILE_MAX_BYTES. Raises OSError, UnicodeError, or UsageError for a non-file."""
    try:
        data = read_bounded(where, PROFILE_MAX_BYTES)
    except NotARegularFile as exc:
        if exc.kind == stat.S_IFDIR:
            raise IsADirectoryError(where) from None
        raise UsageError(
            f"--hardware {where}: is not a regular file; give the file written by "
            "`kmx-tune probe --json > FILE`"
        ) from None
    except TooLarge:
        raise UsageError(
            f"--hardware {where}: is larger than {PROFILE_MAX_BYTES // 1024} KiB, so it is not a "
            "profile; write one with `kmx-tune probe --json > FILE`"
        ) from None
    return data.decode("utf-8")


def load_profile(path: str | os.PathLike[str]) -> HardwareProfile:
    """A profile saved by ``kmx-tune probe --json``. UsageError (one line) when the
    file is missing, not JSON, or not a profile."""
    where = os.fspath(path)
    try:
        text = _read_profile(where)
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
    except RecursionError:
        raise UsageError(
            f"--hardware {where}: nested too deeply to be a profile; write one with "
            "`kmx-tune probe --json > FILE`"
        ) from None
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
