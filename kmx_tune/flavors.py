"""The MXNet wheel table as data, each block citing its source, and
``recommend(hardware, python) -> Recommendation`` with its reasons.

Facts: ../shared/facts/mxnet-wheels.md (copied from the package index, MXNet's
``config/distribution/linux_cu*.cmake`` and NVIDIA's CUDA release notes).
A new rule for a GPU is one row here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from kmx_tune.errors import UsageError
from kmx_tune.hardware import HardwareProfile

# The pin that keeps mxnet importable: numpy 1.24 removed the deprecated aliases
# (np.bool, ...) that mxnet 1.9.1 uses (mxnet issue 21165, never fixed; verified:
# numpy 1.23.5 imports, 1.24.4 and 2.x fail). Older mxnet releases are of the same
# era and their own bounds are no looser, so the pin is added to every release.
NUMPY_PIN = "numpy<1.24"

PY_NEWEST_KERAS_MXNET = (3, 9)  # keras-mxnet 2.2.4.3 fails to import on Python >= 3.10
PY_NEWEST_NUMPY_PIN = (3, 11)  # numpy 1.23 (the newest < 1.24) has wheels up to cp311


@dataclass(frozen=True)
class Flavor:
    name: str  # the distribution name on the package index
    newest: str  # its newest release there
    cuda: str | None  # CUDA runtime it is built against; None for CPU builds
    mkl: bool  # an "-mkl" variant (MKL-DNN); plain mxnet has MKL-DNN built in from 1.7.0
    compute_capabilities: tuple[str, ...]  # machine code only, no PTX
    source: str  # where the row comes from
    onednn: bool = True  # MKL-DNN / oneDNN CPU kernels built in

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.newest}"


# --------------------------------------------------------------------- the table

_INDEX = "the package index (`pip index versions NAME`, checked 2026-11-26)"
_CMAKE = "MXNet config/distribution/linux_{}.cmake (MXNET_CUDA_ARCH)"

# Compute capabilities per CUDA flavor, from MXNet's distribution cmake files;
# verified for mxnet-cu117 1.9.1 with cuobjdump (sm_50 ... sm_86, no PTX).
_ARCHS: dict[str, tuple[str, ...]] = {
    "cu75": ("3.0", "3.5", "5.0", "5.2"),
    "cu80": ("3.0", "5.0", "6.0", "6.2"),
    "cu90": ("3.0", "5.0", "6.0", "7.0", "7.2"),
    "cu91": ("3.0", "5.0", "6.0", "7.0", "7.2"),
    "cu92": ("3.0", "5.0", "6.0", "7.0", "7.2"),
    "cu100": ("3.0", "5.0", "6.0", "7.0", "7.5"),
    "cu101": ("3.0", "5.0", "6.0", "7.0", "7.5"),
    "cu102": ("3.0", "5.0", "6.0", "7.0", "7.5"),
    "cu110": ("5.0", "6.0", "7.0", "8.0"),
    **{f"cu11{m}": ("5.0", "6.0", "7.0", "8.0", "8.6") for m in range(1, 8)},
}

# (cuda tag, newest plain release, newest "mkl" release or None); source: _INDEX
_CUDA_RELEASES: tuple[tuple[str, str, str | None], ...] = (
    ("cu75", "1.2.1.post1", "1.2.1.post1"),
    ("cu80", "1.5.0", "1.5.0"),
    ("cu90", "1.6.0.post0", "1.5.1.post0"),
    ("cu91", "1.3.0", "1.3.0"),
    ("cu92", "1.7.0", "1.6.0.post0"),
    ("cu100", "1.9.0", "1.5.1.post0"),
    ("cu101", "1.9.1", "1.6.0.post0"),
    ("cu102", "1.9.1", "1.6.0.post0"),
    # cu110 ... cu117: 1.9.1 only, no "mkl" variants (MKL-DNN is built in since 1.7)
    *((f"cu11{m}", "1.9.1", None) for m in range(8)),
)


def _version_key(version: str) -> tuple[int, ...]:
    """(1, 6, 0, 0) for "1.6.0.post0"; enough for the releases in the table."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _cuda_of(tag: str) -> str:
    digits = tag[2:]
    return f"{digits[:-1]}.{digits[-1]}"


def _build_table() -> dict[str, Flavor]:
    table: dict[str, Flavor] = {
        # CPU builds. Source: the package index; MXNet NEWS.md 1.7.0 ("MKL-DNN as the
        # default CPU backend in binary distribution").
        "mxnet": Flavor("mxnet", "1.9.1", None, False, (), f"{_INDEX}; MXNet NEWS.md 1.7.0"),
        "mxnet-mkl": Flavor("mxnet-mkl", "1.6.0", None, True, (), _INDEX),
        "mxnet-native": Flavor(
            "mxnet-native", "1.8.0.post0", None, False, (), _INDEX, onednn=False
        ),
    }
    for tag, plain, mkl in _CUDA_RELEASES:
        source = f"{_INDEX}; {_CMAKE.format(tag)}"
        for name, newest, is_mkl in (
            (f"mxnet-{tag}", plain, False),
            (f"mxnet-{tag}mkl", mkl, True),
        ):
            if newest is None:
                continue
            onednn = is_mkl or _version_key(newest) >= (1, 7)
            table[name] = Flavor(name, newest, _cuda_of(tag), is_mkl, _ARCHS[tag], source, onednn)
    return table


FLAVORS: Mapping[str, Flavor] = MappingProxyType(_build_table())

# Minimum Linux driver per CUDA runtime. Source: NVIDIA CUDA Toolkit release notes,
# "CUDA Toolkit and Corresponding Driver Versions" (table 3) and, for 11.1 ... 11.8,
# minor-version compatibility (table 2): any driver >= 450.80.02 runs them.
MIN_DRIVER: Mapping[str, str] = MappingProxyType(
    {
        "7.5": "352.31",
        "8.0": "375.26",
        "9.0": "384.81",
        "9.1": "390.46",
        "9.2": "396.26",
        "10.0": "410.48",
        "10.1": "418.39",
        "10.2": "440.33",
        "11.0": "450.36.06",
        **{f"11.{m}": "450.80.02" for m in range(1, 9)},
    }
)

# Hopper (9.0) needs CUDA 11.8, Blackwell (10.x, 12.x) CUDA 12.8. Source: NVIDIA CUDA
# release notes (sm_90 arrived in 11.8, sm_100/sm_120 in 12.8).
_CUDA_FOR_ARCH: tuple[tuple[int, str], ...] = ((10, "12.8"), (9, "11.8"))


# ---------------------------------------------------------------------- helpers


def get_flavor(name: str) -> Flavor:
    """The table row for *name*. UsageError listing the valid names otherwise."""
    key = re.sub(r"[-_.]+", "-", name.strip()).lower()
    if key in FLAVORS:
        return FLAVORS[key]
    hint = ""
    match = re.fullmatch(r"mxnet-(cu\d+)-mkl", key)
    if match and f"mxnet-{match.group(1)}mkl" in FLAVORS:
        hint = f" (the package is mxnet-{match.group(1)}mkl, without the second dash)"
    names = ", ".join(FLAVORS)
    raise UsageError(f"unknown MXNet flavor {name!r}{hint}; valid names: {names}")


def requirements_for(package: str, version: str) -> tuple[str, ...]:
    """pip requirement strings for one MXNet release: the pin and numpy's bound."""
    return (f"{package}=={version}", NUMPY_PIN)


def gpu_has_kernels(flavor: Flavor, capability: str) -> bool:
    """True when *flavor* has machine code a GPU of *capability* can run: same major,
    a built minor at or below the GPU's (CUDA binary compatibility; no wheel ships PTX)."""
    major, minor = _cap(capability)
    return any(
        b_major == major and b_minor <= minor
        for b_major, b_minor in (_cap(c) for c in flavor.compute_capabilities)
    )


def driver_runs(flavor: Flavor, nvidia_driver: str, cuda_driver_version: str) -> bool:
    """True when the driver can run *flavor*'s CUDA runtime: NVML's CUDA driver version
    is at least the flavor's, or the driver meets the flavor's minimum."""
    if flavor.cuda is None:
        return True
    if _cap(cuda_driver_version) >= _cap(flavor.cuda):
        return True
    minimum = MIN_DRIVER.get(flavor.cuda)
    return minimum is not None and _version_key(nvidia_driver) >= _version_key(minimum)


def _tag(flavor: Flavor) -> str:
    """ "cu117" for mxnet-cu117 and mxnet-cu117mkl."""
    return flavor.name.removeprefix("mxnet-").removesuffix("mkl")


def _cap(text: str) -> tuple[int, int]:
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def _newest_first(flavor: Flavor) -> tuple[tuple[int, int], tuple[int, ...], bool]:
    return (_cap(flavor.cuda or "0.0"), _version_key(flavor.newest), not flavor.mkl)


def build_from_source_route(capabilities: tuple[str, ...]) -> str:
    """How to get MXNet with kernels for GPUs no wheel covers."""
    archs = ";".join(sorted(set(capabilities), key=_cap))
    newest_major = max(_cap(c)[0] for c in capabilities)
    cuda = next((v for major, v in _CUDA_FOR_ARCH if newest_major >= major), "11.8")
    return (
        f"Build MXNet 1.9.1 from source for compute capability {archs} with CUDA {cuda} "
        "or newer (MXNet 1.9 predates CUDA 12: expect to patch the build):\n"
        "  git clone --recursive --branch v1.9.x https://github.com/apache/mxnet.git\n"
        "  cd mxnet && cp config/linux_gpu.cmake config.cmake\n"
        f'  cmake -B build -DMXNET_CUDA_ARCH="{archs}" '
        f"-DCMAKE_CUDA_COMPILER=/usr/local/cuda-{cuda}/bin/nvcc\n"
        "  cmake --build build --parallel\n"
        f'  python -m pip install ./python "{NUMPY_PIN}"'
    )


# ------------------------------------------------------------------ the advisor


@dataclass(frozen=True)
class Recommendation:
    package: str
    version: str
    requirements: tuple[str, ...]
    reasons: tuple[str, ...]  # why this flavor, each saying where it came from
    warnings: tuple[str, ...]
    gpu: bool  # a CUDA flavor was chosen
    build_from_source: str | None  # the route when no wheel has kernels for the GPU

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/recommendation/1",
            "package": self.package,
            "version": self.version,
            "requirements": list(self.requirements),
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "gpu": self.gpu,
            "build_from_source": self.build_from_source,
        }


def recommend(
    hw: HardwareProfile,
    python_version: tuple[int, int] | None = None,
    *,
    cpu_only: bool = False,
) -> Recommendation:
    """The MXNet package and version for *hw* and a target Python.

    The newest CUDA flavor that the driver can run and that has machine code for
    every GPU; otherwise plain mxnet 1.9.1 (MKL-DNN built in), with the reason."""
    warnings = list(_platform_warnings(hw, python_version))
    cpu = FLAVORS["mxnet"]

    def cpu_pick(*reasons: str, route: str | None = None) -> Recommendation:
        return Recommendation(
            package=cpu.name,
            version=cpu.newest,
            requirements=requirements_for(cpu.name, cpu.newest),
            reasons=(*reasons, "mxnet 1.9.1 is the newest CPU build and has MKL-DNN built in"),
            warnings=tuple(warnings),
            gpu=False,
            build_from_source=route,
        )

    if cpu_only:
        return cpu_pick("a CPU build was asked for (--cpu)")
    if not hw.gpus or hw.nvidia is None:
        return cpu_pick(f"no NVIDIA GPU found ({hw.origin}: {hw.gpu_reason or 'none listed'})")

    driver, cuda_driver = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    caps = tuple(sorted({g.compute_capability for g in hw.gpus}, key=_cap))
    detected = (
        f"{hw.origin}: driver {driver} (CUDA {cuda_driver}), compute capability {', '.join(caps)}"
    )
    cuda_flavors = sorted((f for f in FLAVORS.values() if f.cuda), key=_newest_first, reverse=True)
    with_kernels = [f for f in cuda_flavors if all(gpu_has_kernels(f, c) for c in caps)]

    if not with_kernels:
        uncovered = tuple(c for c in caps if not any(gpu_has_kernels(f, c) for f in cuda_flavors))
        if uncovered:
            names = ", ".join(
                sorted({g.name for g in hw.gpus if g.compute_capability in uncovered})
            )
            warnings.append(
                f"GPU training needs MXNet built from source: no MXNet wheel has kernels for "
                f"compute capability {', '.join(uncovered)} ({names}); a CUDA flavor would fail "
                'with "no kernel image is available for execution on the device"'
            )
            return cpu_pick(
                f"no MXNet wheel has kernels for compute capability {', '.join(uncovered)} "
                f"(newest wheels: sm_50 ... sm_86, no PTX) ({detected})",
                route=build_from_source_route(uncovered),
            )
        # every GPU has a wheel on its own, but no single wheel covers the mix
        warnings.append(
            "no single MXNet wheel has kernels for all these GPUs; use the CUDA flavor for one "
            "of them with CUDA_VISIBLE_DEVICES, or build from source"
        )
        return cpu_pick(
            f"no single MXNet wheel has kernels for every GPU ({detected})",
            route=build_from_source_route(caps),
        )

    runnable = [f for f in with_kernels if driver_runs(f, driver, cuda_driver)]
    if not runnable:
        oldest = min(with_kernels, key=_newest_first)
        need = MIN_DRIVER.get(oldest.cuda or "", "a newer driver")
        warnings.append(
            f"upgrade the NVIDIA driver to {need} or newer to use {oldest.name} "
            f"(CUDA {oldest.cuda}) on this GPU"
        )
        return cpu_pick(
            f"the NVIDIA driver is too old: {oldest.name}, the oldest CUDA flavor with kernels "
            f"for compute capability {', '.join(caps)}, needs driver {need} or newer "
            f"for CUDA {oldest.cuda} ({detected})"
        )

    pick = runnable[0]
    reasons = [
        f"{pick.name} is the newest CUDA flavor the driver can run with kernels for every GPU "
        f"({detected})",
        f"{pick.name} {pick.newest} has machine code for compute capability "
        f"{' '.join(pick.compute_capabilities)} (source: {_CMAKE.format(_tag(pick))})",
    ]
    newer = [f for f in with_kernels if _newest_first(f) > _newest_first(pick)]
    if newer and not driver_runs(newer[0], driver, cuda_driver):
        reasons.append(
            f"{newer[0].name} (CUDA {newer[0].cuda}) would need driver "
            f"{MIN_DRIVER.get(newer[0].cuda or '', '?')} or newer"
        )
    if _version_key(pick.newest) < _version_key(cpu.newest):
        warnings.append(
            f"{pick.name} stops at {pick.newest}; the CUDA builds of {cpu.newest} start at "
            f"mxnet-cu101, which needs driver {MIN_DRIVER['10.1']} or newer"
        )
    return Recommendation(
        package=pick.name,
        version=pick.newest,
        requirements=requirements_for(pick.name, pick.newest),
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gpu=True,
        build_from_source=None,
    )


def _platform_warnings(hw: HardwareProfile, python_version: tuple[int, int] | None) -> list[str]:
    found: list[str] = []
    if hw.os != "linux" or hw.arch != "x86_64":
        found.append(
            f"MXNet wheels on the index are built for Linux x86-64; this is {hw.os} {hw.arch}, "
            "where pip may find no wheel (build from source)"
        )
    if python_version is not None and python_version > PY_NEWEST_NUMPY_PIN:
        found.append(
            f"{NUMPY_PIN} has no wheel for Python {python_version[0]}.{python_version[1]} "
            "(numpy 1.23 stops at 3.11) and mxnet 1.9.1 fails to import with a newer numpy: "
            "use Python 3.11 or older (3.9 or older for keras-mxnet)"
        )
    elif python_version is not None and python_version > PY_NEWEST_KERAS_MXNET:
        found.append(
            f"keras-mxnet 2.2.4.3 fails to import on Python {python_version[0]}.{python_version[1]}"
            " (`from collections import Iterable`; it needs Python 3.9 or older); mxnet 1.9.1 "
            "itself installs and imports there"
        )
    return found
