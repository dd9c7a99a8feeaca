"""The CUDA, cuDNN and NCCL libraries a CUDA flavor needs besides the driver, and how
they get there: NVIDIA's pip wheels (pinned, installed with the flavor, and found by
``import mxnet`` through kmx-tune's small wiring distribution) or the system (the plan
names what it must provide). Data and pure functions.

Sources: the NEEDED entries of each wheel's libmxnet.so (tools/wheel-audit/); the set
of NVIDIA wheels checked to satisfy every soname of mxnet-cu112/cu117 1.9.1 and the
cuDNN releases to avoid (../shared/facts/cuda-libs-from-pip.md, 2026-11-30: all
cuDNN 8.x wheels ship libcudnn.so.8, 9.x ships .so.9; 8.5.0.96 aborts without an
unversioned libcuda.so; both nvrtc releases ship libnvrtc.so.11.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kmx_tune.flavors.gpu import cap
from kmx_tune.flavors.table import DRIVER, LINUX_X86_64, Wheel

PIP, SYSTEM, AUTO = "pip", "system", "auto"
WIRING_DIST = "kmx-mxnet-cuda-libs"
WIRING_VERSION = "1.0"


@dataclass(frozen=True)
class PipLib:
    """One NVIDIA pip wheel and the soname it provides for libmxnet.so."""

    package: str
    folder: str  # site-packages/nvidia/<folder>/lib
    version: str
    also: tuple[str, ...] = ()  # sonames it provides that libmxnet.so needs indirectly


# soname -> the wheel that ships it (CUDA 11 sonames only: NVIDIA publishes no pip
# wheels for CUDA 10 and older, nor an nvrtc with soname 11.0 or 11.1)
PIP_LIBS: dict[str, PipLib] = {
    "libcudart.so.11.0": PipLib("nvidia-cuda-runtime-cu11", "cuda_runtime", "11.8.89"),
    "libcublas.so.11": PipLib("nvidia-cublas-cu11", "cublas", "11.11.3.6", ("libcublasLt.so.11",)),
    "libcufft.so.10": PipLib("nvidia-cufft-cu11", "cufft", "10.9.0.58"),
    "libcurand.so.10": PipLib("nvidia-curand-cu11", "curand", "10.3.0.86"),
    "libcusolver.so.11": PipLib("nvidia-cusolver-cu11", "cusolver", "11.4.1.48"),
    "libcusparse.so.11": PipLib("nvidia-cusparse-cu11", "cusparse", "11.7.5.86"),
    "libnvrtc.so.11.2": PipLib("nvidia-cuda-nvrtc-cu11", "cuda_nvrtc", "11.8.89"),
    # <9: 9.x ships libcudnn.so.9; not 8.5.0.96 (aborts without an unversioned libcuda.so)
    "libcudnn.so.8": PipLib("nvidia-cudnn-cu11", "cudnn", "8.9.6.50"),
    "libnccl.so.2": PipLib("nvidia-nccl-cu11", "nccl", "2.21.5"),
    "libnvToolsExt.so.1": PipLib("nvidia-nvtx-cu11", "nvtx", "11.8.86"),
}  # fmt: skip
AVOID = {"nvidia-cudnn-cu11": ("8.5.0.96",)}
# The CUDA 11.7 releases of the runtime and NVRTC (same sonames), for a driver whose CUDA
# is 11.7: its NVRTC then emits PTX that driver loads.
CUDA_117 = {"nvidia-cuda-runtime-cu11": "11.7.99", "nvidia-cuda-nvrtc-cu11": "11.7.99"}
# Load order for preloading (a library after those it needs).
LOAD_ORDER = (
    "libcudart.so.11.0", "libcublasLt.so.11", "libcublas.so.11", "libcusparse.so.11",
    "libcufft.so.10", "libcurand.so.10", "libcusolver.so.11", "libnvrtc.so.11.2",
    "libcudnn.so.8", "libnccl.so.2", "libnvToolsExt.so.1",
)  # fmt: skip


@dataclass(frozen=True)
class CudaLibs:
    """What provides a CUDA flavor's libraries, decided before anything is installed."""

    mode: str  # PIP or SYSTEM
    needs: tuple[str, ...]  # the sonames libmxnet.so needs from outside the wheel
    packages: tuple[str, ...] = ()  # pip requirements: "nvidia-cudnn-cu11==8.9.6.50"
    preload: tuple[tuple[str, str], ...] = ()  # (folder, soname) the wiring loads, in order
    environment: tuple[tuple[str, str], ...] = ()  # set for mxnet: MXNET_USE_FUSION=0
    system: tuple[str, ...] = ()  # what the system must provide (SYSTEM mode)
    reasons: tuple[str, ...] = ()
    wiring_version: str = ""  # the local version of kmx-mxnet-cuda-libs

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "needs": list(self.needs),
            "packages": list(self.packages),
            "preload": [{"folder": f, "soname": s} for f, s in self.preload],
            "environment": dict(self.environment),
            "system": list(self.system),
            "reasons": list(self.reasons),
            "wiring": f"{WIRING_DIST}=={self.wiring_version}" if self.wiring_version else None,
        }


@dataclass(frozen=True)
class _Pick:
    packages: dict[str, str] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)


def pip_can_provide(wheel: Wheel) -> tuple[str, ...]:
    """The sonames *wheel* needs that no NVIDIA pip wheel ships (the driver aside)."""
    return tuple(s for s in wheel.needs if s != DRIVER and s not in PIP_LIBS)


def _nvrtc_for_driver(driver_cuda: str | None, pick: _Pick) -> None:
    """NVRTC's PTX must be loadable by the driver: MXNet 1.9.1 compiles fused kernels at
    run time (MXNET_USE_FUSION, on by default) and an older driver cannot load newer PTX."""
    nvrtc = PIP_LIBS["libnvrtc.so.11.2"].version
    if driver_cuda is None or cap(driver_cuda) >= cap(nvrtc):
        return
    if cap(driver_cuda) >= (11, 7):
        pick.packages.update(CUDA_117)
        pick.reasons.append(
            f"nvidia-cuda-nvrtc-cu11 {CUDA_117['nvidia-cuda-nvrtc-cu11']}: the driver's CUDA is "
            f"{driver_cuda}, so the PTX that NVRTC emits for MXNet's fused kernels loads there"
        )
        return
    pick.environment["MXNET_USE_FUSION"] = "0"
    pick.reasons.append(
        f"MXNET_USE_FUSION=0: the driver's CUDA {driver_cuda} is older than every NVRTC on the "
        f"index (11.7, 11.8), and MXNet compiles fused kernels with NVRTC into PTX that an "
        "older driver cannot load; the wiring sets it for every process that imports mxnet"
    )


def plan_pip(wheel: Wheel, driver_cuda: str | None) -> CudaLibs:
    """The NVIDIA wheels for *wheel*, pinned; raises ValueError when one is missing."""
    missing = pip_can_provide(wheel)
    if missing:
        raise ValueError(", ".join(missing))
    pick = _Pick()
    for soname in wheel.needs:
        lib = PIP_LIBS.get(soname)
        if lib is not None:
            pick.packages.setdefault(lib.package, lib.version)
    _nvrtc_for_driver(driver_cuda, pick)
    provided = set(wheel.needs) | {
        a for s in wheel.needs if s in PIP_LIBS for a in PIP_LIBS[s].also
    }
    folders = {s: PIP_LIBS[s].folder for s in PIP_LIBS}
    folders["libcublasLt.so.11"] = PIP_LIBS["libcublas.so.11"].folder
    preload = tuple((folders[s], s) for s in LOAD_ORDER if s in provided)
    tag = wheel.tag + (".nofusion" if pick.environment else "")
    if pick.packages.get("nvidia-cuda-nvrtc-cu11") == CUDA_117["nvidia-cuda-nvrtc-cu11"]:
        tag += ".nvrtc117"
    return CudaLibs(
        mode=PIP,
        needs=wheel.needs,
        packages=tuple(f"{name}=={version}" for name, version in pick.packages.items()),
        preload=preload,
        environment=tuple(pick.environment.items()),
        reasons=(
            f"{len(pick.packages)} NVIDIA wheels provide the CUDA, cuDNN and NCCL libraries "
            f"{wheel.name} {wheel.version} needs besides the driver (no MXNet wheel ships them); "
            f"kmx-tune's small {WIRING_DIST} distribution makes `import mxnet` load them from "
            "this environment, without LD_LIBRARY_PATH",
            *pick.reasons,
        ),
        wiring_version=f"{WIRING_VERSION}+{tag}",
    )


def plan_system(wheel: Wheel) -> CudaLibs:
    """What the system must provide for *wheel*: CUDA, cuDNN and NCCL versions, with
    Debian/Ubuntu and conda package names."""
    cuda = wheel.cuda or "?"
    dashed = cuda.replace(".", "-")
    cudnn = next((s.rsplit(".", 1)[1] for s in wheel.needs if s.startswith("libcudnn.so.")), None)
    nccl = any(s.startswith("libnccl.so.") for s in wheel.needs)
    nvtx = any(s.startswith("libnvToolsExt") for s in wheel.needs)
    sonames = " ".join(s for s in wheel.needs if s != DRIVER)
    what = [f"CUDA {cuda} runtime libraries"]
    apt = [f"cuda-libraries-{dashed}"] + ([f"cuda-nvtx-{dashed}"] if nvtx else [])
    conda = [f"cudatoolkit={cuda}"]
    if cudnn:
        what.append(f"cuDNN {cudnn} for CUDA {cuda}")
        apt.append(f"libcudnn{cudnn}")
        conda.append(f"cudnn={cudnn}")
    if nccl:
        what.append("NCCL 2")
        apt.append("libnccl2")
        conda.append("nccl")
    system = (
        f"{' + '.join(what)}, found by the dynamic loader (ld.so.cache or LD_LIBRARY_PATH): "
        f"{sonames}",
        f"Debian/Ubuntu, from NVIDIA's CUDA apt repository: apt-get install {' '.join(apt)}",
        f"conda: conda install -c conda-forge {' '.join(conda)} (then run Python from that "
        "environment)",
    )
    reasons = [f"the system provides the CUDA libraries {wheel.name} {wheel.version} needs"]
    missing = pip_can_provide(wheel)
    if missing:
        reasons.append(
            f"NVIDIA publishes no pip wheel with {', '.join(missing)}, so they cannot come from pip"
        )
    return CudaLibs(mode=SYSTEM, needs=wheel.needs, system=system, reasons=tuple(reasons))


def plan_cuda_libs(wheel: Wheel, driver_cuda: str | None, mode: str = AUTO) -> CudaLibs | None:
    """How *wheel*'s CUDA libraries get there: pip where NVIDIA publishes every one of
    them (and *mode* allows), else the system. None for CPU builds and for wheels whose
    library needs were not read (not opened). Raises ValueError for ``mode=pip`` when
    pip cannot provide them (the message names the sonames)."""
    if wheel.cuda is None or not wheel.needs:
        return None
    if mode == SYSTEM or wheel.platform != LINUX_X86_64:
        return plan_system(wheel)
    if mode == PIP:
        return plan_pip(wheel, driver_cuda)
    if pip_can_provide(wheel):
        return plan_system(wheel)
    return plan_pip(wheel, driver_cuda)
