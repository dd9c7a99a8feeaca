"""Why a GPU box gets the CPU build: no CUDA build for the platform, a driver too old
for every wheel with machine code for its GPUs, or GPUs no wheel has machine code for
(then the PTX route is mentioned, never chosen, and the build-from-source route given)."""

from __future__ import annotations

from collections.abc import Sequence

from kmx_tune import versions
from kmx_tune.flavors import gpu as rules
from kmx_tune.flavors.table import PLATFORM_NAMES, Wheel
from kmx_tune.hardware import HardwareProfile


def caps_of(hw: HardwareProfile) -> tuple[str, ...]:
    """The compute capabilities of the box's GPUs, oldest first."""
    return tuple(sorted({g.compute_capability for g in hw.gpus}, key=rules.cap))


def python_range(w: Wheel) -> str:
    lo, hi = w.python
    why = " (its own requirement numpy<1.15 has no wheel after 3.7)" if hi < (3, 8) else ""
    return f"{w.name} {w.version} installs only on Python {lo[0]}.{lo[1]}-{hi[0]}.{hi[1]}{why}"


def why_no_gpu_wheel(
    hw: HardwareProfile, platform: str, wheels: Sequence[Wheel], dropped: Sequence[Wheel]
) -> tuple[list[str], list[str], str | None]:
    """Reasons, warnings and a build route for a GPU box that gets the CPU build."""
    assert hw.nvidia is not None
    driver, driver_cuda = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    caps = caps_of(hw)
    names = ", ".join(sorted({g.name for g in hw.gpus}))
    detected = (
        f"{hw.origin}: driver {driver} (CUDA {driver_cuda}), compute capability {', '.join(caps)}"
    )
    cuda_wheels = [w for w in wheels if w.cuda]
    if not cuda_wheels:
        where = PLATFORM_NAMES.get(platform, platform)
        return (
            [f"no CUDA build of MXNet exists for {where} ({detected})"],
            [f"GPU training on {where} needs MXNet built from source for this GPU"],
            None,
        )
    with_sass = [w for w in cuda_wheels if all(rules.code_for(w, c) == rules.SASS for c in caps)]
    if with_sass:
        return _driver_too_old(hw, with_sass, detected, dropped)
    uncovered = [
        c for c in caps if not any(rules.code_for(w, c) == rules.SASS for w in cuda_wheels)
    ]
    warnings: list[str] = []
    if uncovered:
        gpus = ", ".join(sorted({g.name for g in hw.gpus if g.compute_capability in uncovered}))
        reason = (
            f"no MXNet wheel has machine code (SASS) for compute capability "
            f"{', '.join(uncovered)} ({gpus}); the 1.8+ wheels stop at sm_86 and carry no PTX "
            f"({detected})"
        )
    else:
        reason = f"no single MXNet wheel has machine code for every GPU here ({names}; {detected})"
        warnings.append(
            "each GPU kind has a wheel of its own: install the one for one kind and pick those "
            "GPUs with CUDA_VISIBLE_DEVICES, or build MXNet for all of them"
        )
    ptx = _ptx_mention(hw, cuda_wheels, caps)
    if ptx:
        warnings.append(ptx)
    route = rules.build_route(caps)
    if route is None:
        warnings.append(rules.no_route_reason(caps))
    else:
        warnings.append(
            f"GPU training needs MXNet built from source for compute capability {', '.join(caps)} "
            "(the commands are below)"
            + (
                f": the 1.8+ CUDA flavors fail on compute capability {', '.join(uncovered)} with "
                '"no kernel image is available for execution on the device"'
                if uncovered
                else ""
            )
        )
    return [reason], warnings, route


def _ptx_mention(hw: HardwareProfile, wheels: Sequence[Wheel], caps: Sequence[str]) -> str | None:
    """The PTX route, when one exists: mentioned, not recommended (see module doc)."""
    assert hw.nvidia is not None
    runs = [
        w
        for w in wheels
        if all(rules.code_for(w, c) is not None for c in caps)
        and rules.driver_route(w, hw.nvidia.driver_version, hw.nvidia.cuda_driver_version)
    ]
    if not runs:
        return None
    # newest CUDA first (its libraries know the most GPUs), then the newest release
    best = max(runs, key=lambda w: (rules.cap(w.cuda or "0"), versions.key(w.version)))
    share = (
        f"PTX in {best.ptx_bundles[0]} of {best.ptx_bundles[1]} kernel bundles"
        if best.ptx_bundles
        else "PTX (share not measured)"
    )
    return (
        f"{best.name} {best.version} (and other wheels up to 1.7.0) carries PTX "
        f"{' '.join(best.ptx)} that the driver can JIT-compile for compute capability "
        f"{', '.join(caps)} ({share}): "
        "not recommended, only mentioned: the bundles without PTX have no code for this GPU, "
        "the first run compiles hundreds of kernels, and kmx-tune has not run it on such a GPU "
        f"(`kmx-tune install-mxnet --flavor {best.name}` installs it anyway)"
    )


def _driver_too_old(
    hw: HardwareProfile, with_sass: Sequence[Wheel], detected: str, dropped: Sequence[Wheel]
) -> tuple[list[str], list[str], str | None]:
    oldest = min(with_sass, key=lambda w: (rules.cap(w.cuda or "0"), versions.key(w.version)))
    need = rules.minimum_driver(oldest.cuda or "", oldest.platform) or "a newer driver"
    reasons = [
        f"the NVIDIA driver is too old: {oldest.name} {oldest.version}, the oldest CUDA build "
        f"with machine code for every GPU here, needs driver {need} or newer for CUDA "
        f"{oldest.cuda} ({detected})"
    ]
    warnings = [
        f"upgrade the NVIDIA driver to {need} or newer to use {oldest.name} (CUDA {oldest.cuda})"
    ]
    assert hw.nvidia is not None
    caps = caps_of(hw)
    for w in dropped:
        runs = rules.driver_route(w, hw.nvidia.driver_version, hw.nvidia.cuda_driver_version)
        if runs and w.cuda and all(rules.code_for(w, c) == rules.SASS for c in caps):
            reasons.append(f"the driver runs {w.name}, but {python_range(w)}")
    return reasons, warnings, None
