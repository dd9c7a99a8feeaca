"""The rules about NVIDIA GPUs and drivers the advisor applies to the table: which code
in a wheel a GPU can run, which CUDA a driver runs, and how to build for GPUs no
wheel has machine code for. Pure functions of table rows and profile facts."""

from __future__ import annotations

from collections.abc import Iterable

from kmx_tune import versions
from kmx_tune.flavors.table import ARCH_CUDA, MIN_DRIVER, MINOR_COMPAT_FLOOR, NUMPY_PIN, Wheel

SASS, PTX = "sass", "ptx"
NATIVE, MINOR_COMPAT = "native", "minor-compat"


def cap(text: str) -> tuple[int, int]:
    """(8, 6) for "8.6" (and for "8.6.0"); (0, 0) for text that is not such a number (a
    hand-edited profile), which every rule then treats as older than anything."""
    major, _, minor = str(text).strip().partition(".")
    try:
        return int(major), int(minor.split(".")[0] or 0)
    except ValueError:
        return 0, 0


def code_for(wheel: Wheel, capability: str) -> str | None:
    """How a GPU of *capability* runs *wheel*'s kernels: SASS (machine code of the same
    major at a minor no newer than the GPU's: CUDA's binary compatibility), PTX (none of
    that, but PTX for an arch no newer than the GPU's, which the driver JIT-compiles),
    or None (no code at all: "no kernel image is available for execution")."""
    major, minor = cap(capability)
    if any(m == major and n <= minor for m, n in map(cap, wheel.sass)):
        return SASS
    if any((m, n) <= (major, minor) for m, n in map(cap, wheel.ptx)):
        return PTX
    return None


def os_family(platform: str) -> str:
    return "windows" if platform.startswith("windows") else "linux"


def minimum_driver(cuda: str, platform: str) -> str | None:
    return MIN_DRIVER[os_family(platform)].get(cuda)


def driver_route(wheel: Wheel, driver: str, driver_cuda: str) -> str | None:
    """NATIVE when the driver supports the wheel's CUDA (NVML's CUDA version is no older
    and the driver meets that CUDA's minimum), MINOR_COMPAT when only CUDA 11's
    minor-version compatibility lets it run (11.x on an 11.y driver from 450.80.02 on,
    without JIT of newer PTX), else None."""
    if wheel.cuda is None:
        return NATIVE
    need = minimum_driver(wheel.cuda, wheel.platform)
    meets = need is not None and versions.key(driver) >= versions.key(need)
    if cap(driver_cuda) >= cap(wheel.cuda) and meets:
        return NATIVE
    floor = MINOR_COMPAT_FLOOR[os_family(wheel.platform)]
    if (
        cap(wheel.cuda)[0] == 11
        and cap(driver_cuda)[0] == 11
        and versions.key(driver) >= versions.key(floor)
    ):
        return MINOR_COMPAT
    return None


def describe_code(wheel: Wheel) -> str:
    """ "SASS 5.0 6.0 7.0 8.0 8.6, no PTX" or "SASS 3.0 ... 7.0 + PTX 7.0 (318 of 369
    kernel bundles)", with where the list comes from."""
    text = f"SASS {' '.join(wheel.sass)}"
    if wheel.ptx:
        text += f" + PTX {' '.join(wheel.ptx)}"
        if wheel.ptx_bundles:
            text += f" (PTX in {wheel.ptx_bundles[0]} of {wheel.ptx_bundles[1]} kernel bundles)"
    else:
        text += ", no PTX"
    where = wheel.audited or "assumed: the wheel was not opened"
    return f"{text}; {where}"


# ------------------------------------------------------------ building from source


def _cuda_range(capability: str) -> tuple[str, str | None]:
    wanted = cap(capability)
    first, last = "3.0", None
    for arch, lo, hi in ARCH_CUDA:
        if arch <= wanted:
            first, last = lo, hi
    return first, last


def build_route(capabilities: Iterable[str]) -> str | None:
    """How to build MXNet 1.9.1 with kernels for every GPU in *capabilities*, or a line
    saying why there is no such build (Fermi; a mix no single CUDA targets)."""
    caps = sorted(set(capabilities), key=cap)
    ranges = {c: _cuda_range(c) for c in caps}
    fermi = [c for c in caps if cap(c)[0] < 3]
    if fermi:
        return None
    first = max((lo for lo, _ in ranges.values()), key=cap)
    lasts = [hi for _, hi in ranges.values() if hi is not None]
    last = min(lasts, key=cap) if lasts else None
    if last is not None and cap(last) < cap(first):
        return None
    archs = ";".join(caps)
    if last is not None:
        limiter = next(c for c, (_, hi) in ranges.items() if hi == last)
        which = (
            f"CUDA {first}" if first == last else f"CUDA {first} to {last}"
        ) + f" (CUDA {_next_major(last)} dropped sm_{limiter.replace('.', '')})"
        cuda = last
    else:
        which = f"CUDA {first} or newer"
        cuda = first
    patch = " (MXNet 1.9 predates CUDA 12: expect to patch the build)" if cap(cuda)[0] >= 12 else ""
    return (
        f"Build MXNet 1.9.1 from source for compute capability {archs} with {which}{patch}:\n"
        "  git clone --recursive --branch v1.9.x https://github.com/apache/mxnet.git\n"
        "  cd mxnet && cp config/linux_gpu.cmake config.cmake\n"
        f'  cmake -B build -DMXNET_CUDA_ARCH="{archs}" '
        f"-DCMAKE_CUDA_COMPILER=/usr/local/cuda-{cuda}/bin/nvcc\n"
        "  cmake --build build --parallel\n"
        f'  python -m pip install ./python "{NUMPY_PIN}"'
    )


def no_route_reason(capabilities: Iterable[str]) -> str:
    caps = sorted(set(capabilities), key=cap)
    fermi = [c for c in caps if cap(c)[0] < 3]
    if fermi:
        return (
            f"there is no build route for compute capability {', '.join(fermi)} (Fermi): "
            "CUDA 9 and newer cannot target sm_20, and the only wheel with any sm_20 code, "
            "mxnet-cu75 1.2.1.post1, has it in 7 of 225 kernel bundles"
        )
    return (
        f"no single CUDA version targets all of compute capability {', '.join(caps)}; "
        "build one MXNet per GPU kind and pick the GPUs with CUDA_VISIBLE_DEVICES"
    )


def _next_major(cuda: str) -> str:
    return f"{cap(cuda)[0] + 1}.0"
