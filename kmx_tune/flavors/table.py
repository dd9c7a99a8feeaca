"""The MXNet wheel table: one row per wheel pip can install (flavor, release, platform),
each citing where it comes from. Data only; the rules that read it are in
:mod:`kmx_tune.flavors.advisor`. A new fact about a wheel is one row here.

Where the facts come from:

- releases per platform: the package index's file list for every flavor
  (../shared/facts/wheel-audit/per-platform.txt, 2026-11-30);
- the GPU code (SASS and PTX archs) and the CUDA libraries each Linux wheel needs:
  its libmxnet.so, opened with ``tools/audit_wheels.py`` (kmx-tune's own fatbin and
  ELF readers); one report per wheel in ``tools/wheel-audit/``. Re-check a row with
  ``python tools/audit_wheels.py --check NAME==VERSION``;
- the Python versions a release installs on: ``pip install --dry-run`` of the
  release and ``numpy<1.24`` for Python 3.6-3.13 (../shared/facts/mxnet-wheels.md,
  "Audit 2026-11-30"; the network tests re-run a sample);
- no AVX: ../shared/facts/wheel-audit/noavx-results.txt (``qemu-x86_64 -cpu Nehalem``).

Windows and macOS wheels were not opened: their GPU code is assumed to be what the
Makefile build of the same CUDA version gives on Linux, and rows say so
(``audited`` is empty), so advice built on them says so too.
"""

from __future__ import annotations

from dataclasses import dataclass

from kmx_tune import versions

LINUX_X86_64 = "linux-x86_64"
LINUX_AARCH64 = "linux-aarch64"
MACOS_X86_64 = "macos-x86_64"
MACOS_ARM64 = "macos-arm64"
WINDOWS_X86_64 = "windows-x86_64"
PLATFORM_NAMES = {
    LINUX_X86_64: "Linux x86-64",
    LINUX_AARCH64: "Linux aarch64",
    MACOS_X86_64: "macOS x86-64",
    MACOS_ARM64: "macOS arm64 (Apple silicon)",
    WINDOWS_X86_64: "Windows x86-64",
}

# The pin that keeps mxnet importable: numpy 1.24 removed the aliases (np.bool, ...)
# that mxnet 1.9.1 uses (mxnet issue 21165, never fixed; verified: numpy 1.23.5
# imports, 1.24.4 and 2.x fail). Added to every release: older ones are no looser.
NUMPY_PIN = "numpy<1.24"
PY_NEWEST_KERAS_MXNET = (3, 9)  # keras-mxnet 2.2.4.3 fails to import on Python >= 3.10
PY_NEWEST_NUMPY_PIN = (3, 11)  # numpy 1.23 (the newest < 1.24) has wheels up to cp311

Py = tuple[int, int]
# numpy<1.24 has wheels for Python 3.6-3.11 (its own requirement numpy>1.16 allows it)
PY_MODERN: tuple[Py, Py] = ((3, 6), (3, 11))
# releases that require numpy<1.15 themselves: it has no wheel after Python 3.7
PY_NUMPY_115: tuple[Py, Py] = ((3, 6), (3, 7))

_INDEX = "per-platform.txt (the index's files, 2026-11-30)"
_PY_AUDIT = "Python range: mxnet-wheels.md audit (pip --dry-run, Python 3.6-3.13)"


def _audit(name: str, version: str) -> str:
    return f"tools/wheel-audit/{name}-{version}.json"


@dataclass(frozen=True)
class Wheel:
    """One release of one flavor for one platform."""

    name: str  # distribution name on the index: "mxnet-cu112"
    version: str  # "1.9.1"
    platform: str  # LINUX_X86_64, ...
    cuda: str | None = None  # the CUDA it was built with; None for CPU builds
    sass: tuple[str, ...] = ()  # compute capabilities with machine code in libmxnet.so
    ptx: tuple[str, ...] = ()  # compute capabilities with PTX (JIT-compiled for newer GPUs)
    ptx_bundles: tuple[int, int] | None = None  # (kernel bundles with PTX, all bundles)
    needs: tuple[str, ...] = ()  # CUDA sonames libmxnet.so needs from outside the wheel
    python: tuple[Py, Py] = PY_MODERN  # oldest and newest Python it installs on
    mkl: bool = False  # an "-mkl" variant
    onednn: bool | None = True  # MKL-DNN / oneDNN built in; None: not checked
    avx: bool | None = None  # True: dies without AVX; False: runs without; None: unknown
    audited: str = ""  # the report of the opened wheel; "" when assumed
    source: str = ""  # where the rest of the row comes from

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    @property
    def tag(self) -> str:
        """ "cu112" for mxnet-cu112 and mxnet-cu112mkl; "" for CPU builds."""
        return self.name.removeprefix("mxnet-").removesuffix("mkl") if self.cuda else ""

    def installs_on(self, python: Py | None) -> bool:
        return python is None or self.python[0] <= python <= self.python[1]


# ------------------------------------------------------------------ CUDA sonames


def _cuda_libs(suffix: str, *, fft: str | None = None, blas: str | None = None,
               solver: str | None = None, rand: str | None = None) -> tuple[str, ...]:  # fmt: skip
    """The runtime, cuBLAS, cuFFT, cuRAND and cuSOLVER sonames of one CUDA version."""
    return (
        f"libcudart.so.{suffix}",
        f"libcublas.so.{blas or suffix}",
        f"libcufft.so.{fft or suffix}",
        f"libcurand.so.{rand or suffix}",
        f"libcusolver.so.{solver or suffix}",
    )


DRIVER = "libcuda.so.1"
NVTX = "libnvToolsExt.so.1"
NCCL = "libnccl.so.2"
_CUDA11 = _cuda_libs("11.0", fft="10", blas="11", solver="11", rand="10")
_CUDA102 = _cuda_libs("10.2", fft="10", blas="10", solver="10", rand="10")
_CUDA101 = _cuda_libs("10.1", fft="10", blas="10", solver="10", rand="10")


def _cuda8x9x(version: str) -> tuple[str, ...]:
    """CUDA 8.0-10.0 builds: one soname suffix for all, plus NVRTC and the driver."""
    return (*_cuda_libs(version), f"libnvrtc.so.{version}", DRIVER)


def _cuda11x(nvrtc: str, *, sparse: bool) -> tuple[str, ...]:
    """The 1.9.1 builds for CUDA 11.1-11.7 (cmake): cuDNN 8, NCCL, NVTX, the driver."""
    cusparse = ("libcusparse.so.11",) if sparse else ()
    return (*_CUDA11, *cusparse, f"libnvrtc.so.{nvrtc}", DRIVER, "libcudnn.so.8", NCCL, NVTX)


# Makefile builds (<= 1.7.0): SASS for KNOWN_CUDA_ARCHS that the CUDA version supports,
# PTX for the newest (MXNet tag 1.6.0 Makefile, lines 426-441); the audit confirms it.
_MAKE_75 = ("3.0", "3.5", "5.0", "5.2")  # (+ sm_20 code in 7 of 225 bundles: not counted)
_MAKE_80 = (*_MAKE_75, "6.0", "6.1")
_MAKE_9X = (*_MAKE_80, "7.0")
_MAKE_10X = (*_MAKE_9X, "7.5")
# cmake builds (1.8+): config/distribution/linux_cu*.cmake, confirmed by the audit
_CMAKE_10X = ("3.0", "5.0", "6.0", "7.0", "7.5")
_CMAKE_110 = ("5.0", "6.0", "7.0", "8.0")
_CMAKE_11X = ("5.0", "6.0", "7.0", "8.0", "8.6")


def _linux_gpu(name: str, version: str, cuda: str, sass: tuple[str, ...],
               needs: tuple[str, ...], *, ptx: tuple[str, ...] = (),
               ptx_bundles: tuple[int, int] | None = None, python: tuple[Py, Py] = PY_MODERN,
               onednn: bool | None = None) -> Wheel:  # fmt: skip
    mkl = name.endswith("mkl")
    return Wheel(
        name, version, LINUX_X86_64, cuda, sass, ptx, ptx_bundles, needs, python, mkl,
        onednn if onednn is not None else (mkl or versions.release(version) >= (1, 7)),
        audited=_audit(name, version), source=f"{_INDEX}; {_PY_AUDIT}",
    )  # fmt: skip


# ------------------------------------------------------------------------ rows

# fmt: off
WHEELS: tuple[Wheel, ...] = (
    # ---- Linux x86-64, CPU. avx: noavx-results.txt (qemu -cpu Nehalem): mxnet 1.9.1's
    # bundled OpenBLAS dies in dot (SIGILL); mxnet-native 1.8.0.post0 runs add, dot and
    # conv; mxnet-mkl 1.6.0 dies at import.
    Wheel("mxnet", "1.9.1", LINUX_X86_64, avx=True, onednn=True,
          source=f"{_INDEX}; MXNet NEWS.md 1.7.0 (MKL-DNN built in); noavx-results.txt"),
    Wheel("mxnet-mkl", "1.6.0", LINUX_X86_64, mkl=True, avx=True,
          source=f"{_INDEX}; noavx-results.txt"),
    Wheel("mxnet-native", "1.8.0.post0", LINUX_X86_64, onednn=False, avx=False,
          source=f"{_INDEX}; noavx-results.txt"),
    # ---- Linux x86-64, CUDA: every row read from the wheel (tools/wheel-audit/NAME-VERSION.json).
    #   name                version        CUDA    SASS        CUDA libraries needed
    _linux_gpu("mxnet-cu75",     "1.2.1.post1", "7.5",  _MAKE_75,  _cuda_libs("7.5"),
               ptx=("5.0", "5.2"), ptx_bundles=(202, 225), python=PY_NUMPY_115),
    _linux_gpu("mxnet-cu75mkl",  "1.2.1.post1", "7.5",  _MAKE_75,  _cuda_libs("7.5"),
               ptx=("5.0", "5.2"), ptx_bundles=(202, 225), python=PY_NUMPY_115),
    _linux_gpu("mxnet-cu80",     "1.5.0",       "8.0",  _MAKE_80,  _cuda8x9x("8.0"),
               ptx=("6.1",), ptx_bundles=(136, 284)),
    _linux_gpu("mxnet-cu80mkl",  "1.5.0",       "8.0",  _MAKE_80,  _cuda8x9x("8.0"),
               ptx=("6.1",), ptx_bundles=(136, 284)),
    _linux_gpu("mxnet-cu90",     "1.6.0.post0", "9.0",  _MAKE_9X,  _cuda8x9x("9.0"),
               ptx=("7.0",), ptx_bundles=(318, 369)),
    _linux_gpu("mxnet-cu90mkl",  "1.5.1.post0", "9.0",  _MAKE_9X,  _cuda8x9x("9.0"),
               ptx=("7.0",), ptx_bundles=(271, 322)),
    _linux_gpu("mxnet-cu91",     "1.2.1.post1", "9.1",  _MAKE_9X,  _cuda_libs("9.1"),
               ptx=("6.0", "7.0"), ptx_bundles=(229, 258), python=PY_NUMPY_115),
    _linux_gpu("mxnet-cu91mkl",  "1.2.1.post1", "9.1",  _MAKE_9X,  _cuda_libs("9.1"),
               ptx=("6.0", "7.0"), ptx_bundles=(229, 258), python=PY_NUMPY_115),
    _linux_gpu("mxnet-cu92",     "1.7.0",       "9.2",  _MAKE_9X,  (*_cuda8x9x("9.2"), NVTX),
               ptx=("7.0",), ptx_bundles=(351, 402)),
    _linux_gpu("mxnet-cu92mkl",  "1.6.0.post0", "9.2",  _MAKE_9X,  _cuda8x9x("9.2"),
               ptx=("7.0",), ptx_bundles=(318, 369)),
    _linux_gpu("mxnet-cu100",    "1.9.0",       "10.0", _CMAKE_10X,
               (*_cuda8x9x("10.0"), "libcudnn.so.7", NCCL, NVTX)),
    _linux_gpu("mxnet-cu100mkl", "1.5.1.post0", "10.0", _MAKE_10X, (*_cuda8x9x("10.0"), NVTX),
               ptx=("7.0", "7.5"), ptx_bundles=(271, 326)),
    _linux_gpu("mxnet-cu101",    "1.9.1",       "10.1", _CMAKE_10X,
               (*_CUDA101, "libnvrtc.so.10.1", DRIVER, "libcudnn.so.7", NCCL, NVTX)),
    _linux_gpu("mxnet-cu101mkl", "1.6.0.post0", "10.1", _MAKE_10X,
               (*_CUDA101, "libnvrtc.so.10.1", DRIVER),
               ptx=("7.0", "7.5"), ptx_bundles=(318, 373)),
    _linux_gpu("mxnet-cu102",    "1.9.1",       "10.2", _CMAKE_10X,
               (*_CUDA102, "libnvrtc.so.10.2", DRIVER, "libcudnn.so.8", NCCL, NVTX)),
    _linux_gpu("mxnet-cu102mkl", "1.6.0.post0", "10.2", _MAKE_10X,
               (*_CUDA102, "libnvrtc.so.10.2", DRIVER, NVTX),
               ptx=("7.0", "7.5"), ptx_bundles=(318, 373)),
    # CUDA 11.0's cuSOLVER still has soname 10; from 11.1 on it is 11
    _linux_gpu("mxnet-cu110",    "1.9.1",       "11.0", _CMAKE_110,
               (*_cuda_libs("11.0", fft="10", blas="11", solver="10", rand="10"),
                "libnvrtc.so.11.0", DRIVER, "libcudnn.so.8", NCCL, NVTX)),
    _linux_gpu("mxnet-cu111",    "1.9.1",       "11.1", _CMAKE_11X, _cuda11x("11.1", sparse=True)),
    _linux_gpu("mxnet-cu112",    "1.9.1",       "11.2", _CMAKE_11X, _cuda11x("11.2", sparse=False)),
    _linux_gpu("mxnet-cu113",    "1.9.1",       "11.3", _CMAKE_11X, _cuda11x("11.2", sparse=True)),
    _linux_gpu("mxnet-cu114",    "1.9.1",       "11.4", _CMAKE_11X, _cuda11x("11.2", sparse=True)),
    _linux_gpu("mxnet-cu115",    "1.9.1",       "11.5", _CMAKE_11X, _cuda11x("11.2", sparse=True)),
    _linux_gpu("mxnet-cu116",    "1.9.1",       "11.6", _CMAKE_11X, _cuda11x("11.2", sparse=True)),
    _linux_gpu("mxnet-cu117",    "1.9.1",       "11.7", _CMAKE_11X, _cuda11x("11.2", sparse=True)),
    # ---- Linux aarch64: the CPU build only. cu111 and cu113-cu117 list an empty
    # "1.0.0 py3-none-any" placeholder (dist-info only): never planned (every plan pins).
    Wheel("mxnet", "1.9.1", LINUX_AARCH64, onednn=None, source=_INDEX),
    # ---- macOS x86-64 (wheels not opened)
    Wheel("mxnet", "1.9.1", MACOS_X86_64, onednn=None, source=_INDEX),
    Wheel("mxnet-mkl", "1.5.1.post0", MACOS_X86_64, mkl=True, source=_INDEX),
    # ---- macOS arm64: nothing. mxnet 1.6.0's py2.py3-none-any wheel holds Linux .so files.
    # ---- Windows x86-64 (wheels not opened: GPU code assumed like the Linux Makefile
    # build of the same CUDA version, PTX for the newest arch; the CUDA DLLs not read)
    Wheel("mxnet", "1.7.0.post2", WINDOWS_X86_64, onednn=None, source=_INDEX),
    Wheel("mxnet-mkl", "1.5.0", WINDOWS_X86_64, mkl=True, source=_INDEX),
    *(
        Wheel(name, version, WINDOWS_X86_64, cuda, sass, (sass[-1],), None, (), python,
              name.endswith("mkl"), onednn=True if name.endswith("mkl") else None,
              source=f"{_INDEX}; GPU code assumed (the Windows wheel was not opened)")
        for base, version, cuda, sass, python in (
            ("mxnet-cu80",  "1.5.0", "8.0",  _MAKE_80,  PY_MODERN),
            ("mxnet-cu90",  "1.5.0", "9.0",  _MAKE_9X,  PY_MODERN),
            ("mxnet-cu91",  "1.3.0", "9.1",  _MAKE_9X,  PY_NUMPY_115),
            ("mxnet-cu92",  "1.5.0", "9.2",  _MAKE_9X,  PY_MODERN),
            ("mxnet-cu100", "1.5.0", "10.0", _MAKE_10X, PY_MODERN),
            ("mxnet-cu101", "1.5.0", "10.1", _MAKE_10X, PY_MODERN),
        )
        for name in (base, base + "mkl")
    ),
)
# fmt: on


def find_wheel(name: str, version: str, platform: str) -> Wheel | None:
    """The row for exactly this release on *platform*, or None."""
    for row in WHEELS:
        if row.name == name and row.platform == platform and versions.same(row.version, version):
            return row
    return None


def rows_for(platform: str) -> tuple[Wheel, ...]:
    return tuple(row for row in WHEELS if row.platform == platform)


# --------------------------------------------------------------- the NVIDIA driver

# Minimum driver per CUDA version, Linux and Windows columns. Source: NVIDIA CUDA Toolkit
# release notes, table 3 "CUDA Toolkit and Corresponding Driver Versions" (GA releases;
# 8.0 is 8.0.61 GA2; 11.0 is 11.0.2 GA, 450.36.06 was the 11.0.1 RC's).
MIN_DRIVER: dict[str, dict[str, str]] = {
    "linux": {
        "7.5": "352.31", "8.0": "375.26", "9.0": "384.81", "9.1": "390.46", "9.2": "396.26",
        "10.0": "410.48", "10.1": "418.39", "10.2": "440.33", "11.0": "450.51.05",
        "11.1": "455.23", "11.2": "460.27.03", "11.3": "465.19.01", "11.4": "470.42.01",
        "11.5": "495.29.05", "11.6": "510.39.01", "11.7": "515.43.04", "11.8": "520.61.05",
    },
    "windows": {
        "7.5": "353.66", "8.0": "376.51", "9.0": "385.54", "9.1": "391.29", "9.2": "397.44",
        "10.0": "411.31", "10.1": "418.96", "10.2": "441.22", "11.0": "451.48",
        "11.1": "456.38", "11.2": "460.82", "11.3": "465.89", "11.4": "471.11",
        "11.5": "496.04", "11.6": "511.23", "11.7": "516.01", "11.8": "520.06",
    },
}  # fmt: skip
# CUDA 11 minor-version compatibility: an 11.x runtime on any driver from this one on,
# without JIT of newer PTX (NVIDIA release notes, table 2; CUDA compatibility guide).
MINOR_COMPAT_FLOOR = {"linux": "450.80.02", "windows": "452.39"}

# Which CUDA versions can target a compute capability: (major, minor) -> (first CUDA,
# last CUDA or None). Source: NVIDIA CUDA release notes (sm_20 dropped in 9.0, sm_30 in
# 11.0, sm_35/sm_37 in 12.0; sm_80 new in 11.0, sm_86 in 11.1, sm_89/sm_90 in 11.8,
# Blackwell sm_100/sm_120 in 12.8).
ARCH_CUDA: tuple[tuple[tuple[int, int], str, str | None], ...] = (
    ((2, 0), "3.0", "8.0"),
    ((3, 0), "6.0", "10.2"),
    ((3, 5), "6.0", "11.8"),
    ((5, 0), "6.5", None),
    ((6, 0), "8.0", None),
    ((7, 0), "9.0", None),
    ((7, 5), "10.0", None),
    ((8, 0), "11.0", None),
    ((8, 6), "11.1", None),
    ((8, 9), "11.8", None),
    ((9, 0), "11.8", None),
    ((10, 0), "12.8", None),
)
