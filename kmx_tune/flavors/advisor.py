"""``recommend(hardware, python) -> Recommendation``: the one function that decides which
MXNet wheel a box gets. ``probe``, ``doctor`` and ``install-mxnet`` all ask it.

The steps, each small: the wheels of the box's platform that install on the target's
Python (:func:`installable`); the CPU build for its CPU (:func:`cpu_choice`); for a
GPU box, every CUDA wheel ranked (:func:`gpu_candidates`): machine code for every GPU,
a driver that runs its CUDA natively (then CUDA 11 minor-version compatibility, with a
warning), newest MXNet release first, then newest CUDA; otherwise the CPU build and
why (:func:`why_no_gpu_wheel`). install-mxnet then resolves the candidates in order
with the target's pip and keeps the first that resolves.

PTX: a wheel whose only code for a GPU is PTX (the <= 1.7.0 wheels on a newer GPU)
is mentioned, never chosen: in the audited wheels 10% to 52% of the kernel bundles
carry no PTX at all, so some operators would fail with "no kernel image is available",
the driver JIT-compiles hundreds of kernels at first use, and nothing of it was run
on a GPU here.
"""

from __future__ import annotations

from collections.abc import Sequence

from kmx_tune import versions
from kmx_tune.flavors import gpu as rules
from kmx_tune.flavors.cuda_libs import AUTO, plan_cuda_libs
from kmx_tune.flavors.explain import caps_of, why_no_gpu_wheel
from kmx_tune.flavors.model import Choice, Recommendation, platform_of
from kmx_tune.flavors.table import (
    MACOS_ARM64,
    NUMPY_PIN,
    PLATFORM_NAMES,
    PY_NEWEST_KERAS_MXNET,
    PY_NEWEST_NUMPY_PIN,
    Wheel,
    rows_for,
)
from kmx_tune.hardware import HardwareProfile

Py = tuple[int, int]


def _py(python: Py | None) -> str:
    return "" if python is None else f"Python {python[0]}.{python[1]}"


def installable(platform: str, python: Py | None) -> tuple[list[Wheel], list[Wheel]]:
    """The wheels for *platform* that install on *python*, and those that do not."""
    rows = rows_for(platform)
    return [w for w in rows if w.installs_on(python)], [
        w for w in rows if not w.installs_on(python)
    ]


def cpu_choice(hw: HardwareProfile, wheels: Sequence[Wheel]) -> Choice | None:
    """The CPU build for this CPU: the newest one, unless the CPU lacks AVX and that
    build is known to die without it."""
    cpus = sorted(
        (w for w in wheels if w.cuda is None and not w.mkl),
        key=lambda w: versions.key(w.version),
        reverse=True,
    )
    if not cpus:
        return None
    no_avx = bool(hw.cpu.flags) and "avx" not in hw.cpu.flags
    if no_avx:
        for w in cpus:
            if w.avx is False:
                return Choice(
                    w,
                    (
                        f"this CPU has no AVX ({hw.origin}: {hw.cpu.brand}); {w.name} "
                        f"{w.version} runs dot, FullyConnected and Convolution without it "
                        f"(qemu -cpu Nehalem), while {cpus[0].name} {cpus[0].version} dies in "
                        "dot with SIGILL (its bundled OpenBLAS uses AVX)",
                    ),
                    ("mxnet-native has no MKL-DNN: CPU training runs slower than with MKL-DNN",),
                )
        return Choice(
            cpus[0],
            (f"{cpus[0].name} {cpus[0].version} is the newest CPU build for this platform",),
            (
                f"this CPU has no AVX ({hw.cpu.brand}); whether {cpus[0].name} "
                f"{cpus[0].version} runs without it was not checked for "
                f"{PLATFORM_NAMES.get(cpus[0].platform, cpus[0].platform)}",
            ),
        )
    w = cpus[0]
    built_in = " and has MKL-DNN built in" if w.onednn else ""
    return Choice(w, (f"{w.name} {w.version} is the newest CPU build{built_in}",))


def gpu_candidates(hw: HardwareProfile, wheels: Sequence[Wheel], mode: str = AUTO) -> list[Choice]:
    """Every CUDA wheel with machine code for every GPU that the driver runs, best
    first: natively supported CUDA before minor-version compatibility, then the newest
    MXNet release, then the newest CUDA, then the plain variant over "-mkl"."""
    assert hw.nvidia is not None
    driver, driver_cuda = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    caps = caps_of(hw)
    ranked = []
    for w in wheels:
        if w.cuda is None or not all(rules.code_for(w, c) == rules.SASS for c in caps):
            continue
        route = rules.driver_route(w, driver, driver_cuda)
        if route is None:
            continue
        key = (
            route == rules.NATIVE,
            versions.key(w.version),
            rules.cap(w.cuda),
            not w.mkl,
        )
        ranked.append((key, w, route))
    ranked.sort(key=lambda item: item[0], reverse=True)
    return [_gpu_choice(hw, w, route, mode) for _, w, route in ranked]


def _gpu_choice(hw: HardwareProfile, w: Wheel, route: str, mode: str) -> Choice:
    assert hw.nvidia is not None and w.cuda is not None
    driver, driver_cuda = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    caps = caps_of(hw)
    detected = (
        f"{hw.origin}: driver {driver} (CUDA {driver_cuda}), compute capability {', '.join(caps)}"
    )
    how = "natively" if route == rules.NATIVE else "only through minor-version compatibility"
    reasons = [
        f"{w.name} {w.version} has machine code for every GPU here, and the driver runs its "
        f"CUDA {w.cuda} {how} ({detected})",
        f"{w.name} {w.version} carries {rules.describe_code(w)}",
    ]
    warnings: list[str] = []
    environment: dict[str, str] = {}
    if route == rules.MINOR_COMPAT:
        environment["MXNET_USE_FUSION"] = "0"
        warnings.append(
            f"the driver's own CUDA is {driver_cuda}; {w.name} (CUDA {w.cuda}) runs only "
            "through CUDA 11 minor-version compatibility, which cannot load newer PTX: MXNet's "
            "run-time fused kernels (NVRTC) would fail, so the plan sets MXNET_USE_FUSION=0; "
            f"a driver of {rules.minimum_driver(w.cuda, w.platform)} or newer runs it natively"
        )
    if not w.audited:
        warnings.append(
            f"the GPU code of the {PLATFORM_NAMES.get(w.platform, w.platform)} wheel was not "
            "read from the wheel (assumed like the Linux build of the same CUDA version)"
        )
    if bool(hw.cpu.flags) and "avx" not in hw.cpu.flags:
        warnings.append(
            "this CPU has no AVX: the CPU side of this wheel uses the same OpenBLAS that makes "
            "mxnet 1.9.1 die in dot with SIGILL there (not checked for the CUDA wheels); "
            "install-mxnet's check runs dot on the CPU and rolls back if it dies"
        )
    libs = None
    try:
        libs = plan_cuda_libs(w, driver_cuda, mode)
    except ValueError as exc:
        warnings.append(
            f"--cuda-libs pip: NVIDIA publishes no pip wheel with {exc}; the system must "
            "provide them"
        )
        libs = plan_cuda_libs(w, driver_cuda, "system")
    if libs is not None:
        environment.update(dict(libs.environment))
    return Choice(w, tuple(reasons), tuple(warnings), tuple(environment.items()), libs)


def _ranking(hw: HardwareProfile, picks: Sequence[Choice], wheels: Sequence[Wheel]) -> list[str]:
    """Why the first candidate beats the others, and what a newer driver would give."""
    assert hw.nvidia is not None
    first = picks[0].wheel
    lines = [
        f"{first.name} {first.version}: the newest MXNet release, then the newest CUDA, among "
        "the wheels with machine code for every GPU that this driver runs"
        + (
            " natively"
            if rules.driver_route(first, hw.nvidia.driver_version, hw.nvidia.cuda_driver_version)
            == rules.NATIVE
            else ""
        )
    ]
    caps = caps_of(hw)
    better = sorted(
        (
            w
            for w in wheels
            if w.cuda
            and rules.cap(w.cuda) > rules.cap(first.cuda or "0")
            and all(rules.code_for(w, c) == rules.SASS for c in caps)
            and rules.driver_route(w, hw.nvidia.driver_version, hw.nvidia.cuda_driver_version)
            != rules.NATIVE
            and versions.key(w.version) >= versions.key(first.version)
        ),
        key=lambda w: rules.cap(w.cuda or "0"),
    )
    if better:
        need = rules.minimum_driver(better[0].cuda or "", better[0].platform)
        lines.append(f"{better[0].name} (CUDA {better[0].cuda}) would need driver {need} or newer")
    return lines


def _platform_warnings(platform: str, python: Py | None) -> list[str]:
    found: list[str] = []
    if python is not None and python > PY_NEWEST_NUMPY_PIN:
        found.append(
            f"{NUMPY_PIN} has no wheel for Python {python[0]}.{python[1]} "
            "(numpy 1.23 stops at 3.11) and mxnet 1.9.1 fails to import with a newer numpy: "
            "use Python 3.11 or older (3.9 or older for keras-mxnet)"
        )
    elif python is not None and python > PY_NEWEST_KERAS_MXNET:
        found.append(
            f"keras-mxnet 2.2.4.3 fails to import on Python {python[0]}.{python[1]}"
            " (`from collections import Iterable`; it needs Python 3.9 or older); mxnet 1.9.1 "
            "itself installs and imports there"
        )
    return found


def _result(
    platform: str,
    picks: Sequence[Choice],
    *,
    reasons: Sequence[str] = (),
    warnings: Sequence[str] = (),
    route: str | None = None,
    gpu: bool = False,
    ranking: Sequence[str] = (),
) -> Recommendation:
    """The recommendation for *picks* (the first one chosen). *reasons* go first;
    *ranking* follows the choice's own first reason (which names the detected facts)."""
    first = picks[0]
    own = (*first.reasons[:1], *ranking, *first.reasons[1:])
    return Recommendation(
        package=first.wheel.name,
        version=first.wheel.version,
        requirements=first.requirements,
        reasons=(*reasons, *own),
        warnings=(*warnings, *first.warnings),
        gpu=gpu,
        build_from_source=route,
        platform=platform,
        candidates=tuple(picks),
        environment=dict(first.environment),
        cuda_libs=first.cuda_libs,
    )


def _nothing(
    platform: str, hw: HardwareProfile, python: Py | None, warnings: list[str]
) -> Recommendation:
    where = PLATFORM_NAMES.get(platform, platform)
    if platform == MACOS_ARM64:
        why = (
            f"nothing installable: no MXNet wheel runs on {where} (mxnet 1.6.0's "
            "py2.py3-none-any wheel, which pip would pick, holds Linux .so files); use a "
            "Linux x86-64 machine or container, or build MXNet from source"
        )
    else:
        why = f"nothing installable: the package index has no MXNet wheel for {where}"
        if python is not None and rows_for(platform):
            why += f" that installs on {_py(python)}"
    return Recommendation(
        package="",
        version="",
        requirements=(),
        reasons=(f"{why} ({hw.origin}: {hw.os} {hw.arch})",),
        warnings=tuple(warnings),
        gpu=False,
        build_from_source=None,
        platform=platform,
    )


def recommend(
    hw: HardwareProfile,
    python_version: Py | None = None,
    *,
    cpu_only: bool = False,
    cuda_libs: str = AUTO,
) -> Recommendation:
    """The MXNet wheel for *hw* and a target Python (None: any Python), with reasons
    that say where each fact came from, and the fallbacks in order."""
    platform = platform_of(hw)
    warnings = _platform_warnings(platform, python_version)
    wheels, dropped = installable(platform, python_version)
    if rows_for(platform) and not [w for w in wheels if w.cuda is None]:
        # nothing installs on this Python (numpy<1.24 stops at 3.11): advise as for a
        # Python that works; the warning above says why this one cannot have it
        wheels, dropped = installable(platform, None)
    cpu = cpu_choice(hw, wheels)
    if cpu is None:
        return _nothing(platform, hw, python_version, warnings)
    if cpu_only:
        return _result(
            platform, [cpu], reasons=["a CPU build was asked for (--cpu)"], warnings=warnings
        )
    if not hw.gpus or hw.nvidia is None:
        reason = f"no NVIDIA GPU found ({hw.origin}: {hw.gpu_reason or 'none listed'})"
        return _result(platform, [cpu], reasons=[reason], warnings=warnings)
    candidates = gpu_candidates(hw, wheels, cuda_libs)
    if candidates:
        return _result(
            platform,
            candidates,
            ranking=_ranking(hw, candidates, wheels),
            warnings=warnings,
            gpu=True,
        )
    reasons, more, route = why_no_gpu_wheel(hw, platform, wheels, dropped)
    return _result(platform, [cpu], reasons=reasons, warnings=[*warnings, *more], route=route)
