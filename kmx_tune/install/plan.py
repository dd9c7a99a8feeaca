"""The install plan: what will change in the target and why. Pure: built from the
target's facts and the hardware profile without touching anything. The advisor's
candidates become plans in order (:attr:`InstallPlan.alternatives`); availability
keeps the first one that resolves."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kmx_tune import versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.flavors.cuda_libs import AUTO, AVOID, PIP, PIP_LIBS, WIRING_DIST, CudaLibs
from kmx_tune.install.resolve import Resolution, TargetTags
from kmx_tune.target import TargetInfo

if TYPE_CHECKING:
    from kmx_tune.flavors import Choice, Recommendation, Wheel
    from kmx_tune.hardware import HardwareProfile

CUDA_LIBS_MODES = (AUTO, "pip", "system")


@dataclass(frozen=True)
class InstallPlan:
    """What will change in the target and why. Built without touching anything."""

    python: str
    python_version: str
    platform: str
    package: str
    version: str
    requirements: tuple[str, ...]  # what pip installs: "mxnet==1.9.1", "numpy<1.24", ...
    uninstall: tuple[Distribution, ...]  # every other MXNet distribution in the target
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    gpu: bool  # a CUDA flavor: verify CUDA, num_gpus() and operations on gpu(0)
    expect_mkldnn: bool  # verify that MKLDNN is compiled in
    build_from_source: str | None = None
    installed: tuple[Distribution, ...] = ()  # the MXNet distributions there now
    numpy_version: str | None = None  # the numpy there now
    environment: Mapping[str, str] = field(default_factory=dict)  # what MXNet must run with
    cuda_libs: CudaLibs | None = None  # how the CUDA libraries get there
    alternatives: tuple[InstallPlan, ...] = ()  # the next candidates, if this one does not resolve
    pip_version: str | None = None  # the target's pip, for resolving
    tags: TargetTags | None = None  # the target's Python and platform tags, for resolving
    resolution: Resolution | None = None  # what pip resolved (set by availability)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "python_version": self.python_version,
            "platform": self.platform,
            "package": self.package,
            "version": self.version,
            "requirements": list(self.requirements),
            "uninstall": [{"name": d.name, "version": d.version} for d in self.uninstall],
            "installed": [{"name": d.name, "version": d.version} for d in self.installed],
            "numpy": self.numpy_version,
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "gpu": self.gpu,
            "expect_mkldnn": self.expect_mkldnn,
            "environment": dict(self.environment),
            "cuda_libs": None if self.cuda_libs is None else self.cuda_libs.to_json(),
            "build_from_source": self.build_from_source,
            "fallbacks": [p.requirement for p in self.alternatives],
            "resolution": None if self.resolution is None else self.resolution.to_json(),
        }


def _tags(target: TargetInfo) -> TargetTags:
    return TargetTags(
        (target.version[0], target.version[1]),
        target.implementation,
        target.sysconfig_platform or f"{target.platform}-{target.machine}",
        target.libc,
    )


def make_plan(
    target: TargetInfo,
    *,
    package: str,
    version: str,
    requirements: Sequence[str],
    reasons: Sequence[str] = (),
    warnings: Sequence[str] = (),
    gpu: bool = False,
    expect_mkldnn: bool = False,
    build_from_source: str | None = None,
    environment: Mapping[str, str] | None = None,
    cuda_libs: CudaLibs | None = None,
) -> InstallPlan:
    """The plan for installing *package*==*version* into *target*. Pure: every other
    MXNet distribution goes, because all flavors write the same ``mxnet`` module and
    a second one silently overwrites the first one's files. When another flavor is
    there, *package* goes too even at the wanted version: uninstalling the other
    flavor deletes the files they share, and pip would then find *package*
    "already satisfied" and leave the broken module in place. kmx-tune's CUDA library
    wiring goes too unless the new plan installs the very same one."""
    others = [d for d in target.mxnet_distributions if normalize(d.name) != normalize(package)]
    uninstall = list(target.mxnet_distributions if others else ())
    wiring = target.dist(WIRING_DIST)
    wanted = (
        f"{WIRING_DIST}=={cuda_libs.wiring_version}"
        if cuda_libs and cuda_libs.wiring_version
        else None
    )
    if wiring is not None and wiring.requirement != wanted:
        uninstall.append(wiring)
    return InstallPlan(
        python=target.python,
        python_version=target.version_str,
        platform=f"{target.platform} {target.machine}",
        package=package,
        version=version,
        requirements=tuple(requirements),
        uninstall=tuple(uninstall),
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gpu=gpu,
        expect_mkldnn=expect_mkldnn,
        build_from_source=build_from_source,
        installed=target.mxnet_distributions,
        numpy_version=target.numpy_version,
        environment=dict(environment or {}),
        cuda_libs=cuda_libs,
        pip_version=target.pip_version,
        tags=_tags(target),
    )


# ------------------------------------------------------------- the CUDA libraries


def fit_libraries(target: TargetInfo, libs: CudaLibs | None) -> tuple[CudaLibs | None, list[str]]:
    """*libs* made to disturb the target as little as possible: an NVIDIA wheel that is
    already there and ships the needed soname stays at its version. Raises UsageError
    when NVIDIA's CUDA 12 wheels there share the folders the CUDA 11 wheels write."""
    if libs is None or libs.mode != PIP:
        return libs, []
    packages: list[str] = []
    warnings: list[str] = []
    for requirement in libs.packages:
        name, _, pinned = requirement.partition("==")
        there = target.dist(name)
        if there is None or there.version == pinned:
            packages.append(requirement)
            continue
        if name == "nvidia-cudnn-cu11" and versions.release(there.version)[:1] != (8,):
            warnings.append(
                f"{name} {there.version} is there but ships no libcudnn.so.8: the plan changes "
                f"it to {pinned}; a package that needs {there.version} would break (pip check "
                "tells)"
            )
            packages.append(requirement)
            continue
        if there.version in AVOID.get(name, ()):
            warnings.append(
                f"{name} {there.version} is there and kept (another package may pin it), but it "
                "aborts the process on first use when the driver has no unversioned libcuda.so"
            )
        packages.append(f"{name}=={there.version}")
    clashes = _cuda12_clashes(target)
    if clashes:
        raise UsageError(
            f"NVIDIA's CUDA 11 pip libraries would overwrite files of {', '.join(clashes)} in "
            f"{target.prefix} (they share site-packages/nvidia/*/lib): install MXNet into a venv "
            "of its own, or use --cuda-libs system with the CUDA libraries on the system"
        )
    return replace(libs, packages=tuple(packages)), warnings


def _cuda12_clashes(target: TargetInfo) -> list[str]:
    folders = {lib.package.replace("-cu11", "-cu12") for lib in PIP_LIBS.values()}
    return sorted(d.requirement for key, d in target.distributions.items() if key in folders)


# ------------------------------------------------------------------ the planner


def _from_choice(
    target: TargetInfo, advice: Recommendation, choice: Choice, *, first: bool
) -> InstallPlan:
    w = choice.wheel
    libs, lib_warnings = fit_libraries(target, choice.cuda_libs)
    reasons = list(
        advice.reasons if first else (f"fallback: {choice.reasons[0]}", *choice.reasons[1:])
    )
    warnings = list(advice.warnings if first else choice.warnings)
    if libs is not None:
        reasons.extend(libs.reasons)
        reasons.extend(f"the system must provide: {line}" for line in libs.system)
    return make_plan(
        target,
        package=w.name,
        version=w.version,
        requirements=_requirements(w.name, w.version, libs),
        reasons=reasons,
        warnings=[*warnings, *lib_warnings],
        gpu=w.cuda is not None,
        expect_mkldnn=bool(w.onednn),
        build_from_source=advice.build_from_source if first else None,
        environment=dict(choice.environment),
        cuda_libs=libs,
    )


def _requirements(package: str, version: str, libs: CudaLibs | None) -> tuple[str, ...]:
    from kmx_tune.flavors import requirements_for

    wiring = (f"{WIRING_DIST}=={libs.wiring_version}",) if libs and libs.wiring_version else ()
    return (*requirements_for(package, version), *(libs.packages if libs else ()), *wiring)


def plan_install(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    flavor: str | None = None,
    version: str | None = None,
    cpu_only: bool = False,
    cuda_libs: str = AUTO,
) -> InstallPlan:
    """The plan from the advisor for *hw* and the target's Python (its fallbacks in
    ``alternatives``), unless ``--flavor`` or ``--version`` overrides it. Pure.
    UsageError for an unknown flavor or a contradiction; KmxError when nothing
    installs on that platform."""
    from kmx_tune.flavors import recommend

    if cuda_libs not in CUDA_LIBS_MODES:
        raise UsageError(f"--cuda-libs {cuda_libs}: choose pip or system")
    advice = recommend(
        hw, (target.version[0], target.version[1]), cpu_only=cpu_only, cuda_libs=cuda_libs
    )
    if flavor is None and version is None:
        if not advice.installable:
            raise KmxError(f"{advice.reasons[0]}; nothing was changed")
        first_libs = advice.candidates[0].cuda_libs
        if cuda_libs == "pip" and first_libs is not None and first_libs.mode != "pip":
            from kmx_tune.flavors.cuda_libs import pip_can_provide

            missing = ", ".join(pip_can_provide(advice.candidates[0].wheel))
            raise UsageError(
                f"--cuda-libs pip: NVIDIA publishes no pip wheel with {missing}, which "
                f"{advice.package} {advice.version} needs; use --cuda-libs system (the plan "
                "says what the system must provide), or a flavor whose libraries are on pip "
                "(mxnet-cu112 ... mxnet-cu117) with --flavor"
            )
        plans = [
            _from_choice(target, advice, choice, first=i == 0)
            for i, choice in enumerate(advice.candidates)
        ]
        return _platform_check(target, advice, replace(plans[0], alternatives=tuple(plans[1:])))
    return _platform_check(
        target, advice, _override(target, hw, advice, flavor, version, cpu_only, cuda_libs)
    )


def _platform_check(target: TargetInfo, advice: Recommendation, plan: InstallPlan) -> InstallPlan:
    """The advice is for the profile's platform; say so when the target runs elsewhere."""
    from kmx_tune.flavors import platform_of_target

    here = platform_of_target(target.platform, target.machine)
    if here == advice.platform:
        return plan
    return replace(
        plan,
        warnings=(
            *plan.warnings,
            f"the hardware profile is for {advice.platform} but {target.python} runs on {here}: "
            "the wheel was chosen for the profile's platform",
        ),
    )


def _override(
    target: TargetInfo,
    hw: HardwareProfile,
    advice: Recommendation,
    flavor: str | None,
    version: str | None,
    cpu_only: bool,
    mode: str,
) -> InstallPlan:
    from kmx_tune.flavors import get_flavor, wheel_for

    name = flavor if flavor is not None else (advice.package or "mxnet")
    chosen = get_flavor(name, advice.platform)
    if cpu_only and chosen.cuda is not None:
        raise UsageError(
            f"--cpu and --flavor {chosen.name} (a CUDA {chosen.cuda} build) contradict each "
            "other; drop one of them"
        )
    if version is not None and versions.parse(version) is None:
        raise UsageError(
            f"--version {version}: not a version number; give one such as 1.9.1 "
            f"(`pip index versions {chosen.name}` lists them)"
        )
    release = version or chosen.version
    row = wheel_for(chosen.name, release, advice.platform)
    reasons: list[str] = []
    warnings: list[str] = []
    if flavor is not None:
        reasons.append(f"{chosen.name}: given with --flavor")
    else:
        reasons.extend(advice.reasons)
    reasons.append(
        f"version {release}: given with --version"
        if version is not None
        else f"version {release}: the newest {chosen.name} release"
    )
    if chosen.name == advice.package and release == advice.version:
        warnings.extend(advice.warnings)
    else:
        why = advice.reasons[0] if advice.reasons else ""
        target_advice = f"{advice.package}=={advice.version}" if advice.installable else "nothing"
        warnings.append(
            f"the advice for this machine is {target_advice}" + (f" ({why})" if why else "")
        )
    environment: dict[str, str] = {}
    libs: CudaLibs | None = None
    if chosen.cuda is not None:
        gpu_warnings, environment, libs = _forced_gpu(
            hw, row or chosen, release, row is not None, mode
        )
        warnings.extend(gpu_warnings)
    libs, lib_warnings = fit_libraries(target, libs)
    if libs is not None:
        reasons.extend(libs.reasons)
        reasons.extend(f"the system must provide: {line}" for line in libs.system)
    return make_plan(
        target,
        package=chosen.name,
        version=release,
        requirements=_requirements(chosen.name, release, libs),
        reasons=reasons,
        warnings=[*warnings, *lib_warnings],
        gpu=chosen.cuda is not None,
        expect_mkldnn=expects_mkldnn(chosen.mkl, bool(chosen.onednn), release),
        build_from_source=advice.build_from_source if chosen.name == advice.package else None,
        environment=environment,
        cuda_libs=libs,
    )


def _forced_gpu(
    hw: HardwareProfile, w: Wheel, release: str, known: bool, mode: str
) -> tuple[list[str], dict[str, str], CudaLibs | None]:
    """Warnings, environment and libraries for a CUDA flavor named on the command line."""
    from kmx_tune.flavors import gpu as rules
    from kmx_tune.flavors.cuda_libs import plan_cuda_libs

    warnings: list[str] = []
    environment: dict[str, str] = {}
    driver_cuda = hw.nvidia.cuda_driver_version if hw.nvidia else None
    if hw.nvidia is not None:
        route = rules.driver_route(w, hw.nvidia.driver_version, hw.nvidia.cuda_driver_version)
        if route is None:
            need = rules.minimum_driver(w.cuda or "", w.platform)
            warnings.append(
                f"the driver {hw.nvidia.driver_version} (CUDA {hw.nvidia.cuda_driver_version}) "
                f"does not run CUDA {w.cuda}; {w.name} needs driver {need} or newer"
            )
        elif route == rules.MINOR_COMPAT:
            environment["MXNET_USE_FUSION"] = "0"
            warnings.append(
                f"the driver's own CUDA is {hw.nvidia.cuda_driver_version}; CUDA {w.cuda} runs "
                "only through CUDA 11 minor-version compatibility, which cannot load newer PTX, "
                "so the plan sets MXNET_USE_FUSION=0 (MXNet's run-time fused kernels)"
            )
        for gpu in hw.gpus:
            code = rules.code_for(w, gpu.compute_capability) if known else rules.SASS
            if code == rules.PTX:
                warnings.append(
                    f"{w.name} {release} has only PTX for {gpu.name} ({gpu.compute_capability}): "
                    "the driver JIT-compiles it at first use; kernel bundles without PTX will "
                    'fail with "no kernel image is available" (not run on such a GPU here)'
                )
            elif code is None:
                warnings.append(
                    f"{w.name} {release} has no code for {gpu.name} ({gpu.compute_capability}): "
                    'GPU work fails with "no kernel image is available for execution on the '
                    'device"'
                )
    if not known:
        warnings.append(
            f"{w.name} {release} is not in kmx-tune's table: its GPU code and the CUDA libraries "
            "it needs were not read (doctor checks the installed library)"
        )
        return warnings, environment, None
    try:
        libs = plan_cuda_libs(w, driver_cuda, mode)
    except ValueError as exc:
        raise UsageError(
            f"--cuda-libs pip: NVIDIA publishes no pip wheel with {exc}, which {w.name} {release} "
            "needs; use --cuda-libs system (the plan says what the system must provide)"
        ) from None
    if libs is not None:
        environment.update(dict(libs.environment))
    return warnings, environment, libs


def expects_mkldnn(mkl_variant: bool, onednn_in_newest: bool, version: str) -> bool:
    """Whether this release of a flavor has MKL-DNN built in: the "-mkl" variants
    always; plain and CUDA builds from 1.7.0 on (MXNet NEWS.md, 1.7.0); never
    mxnet-native (the flavor's ``onednn`` is False)."""
    if mkl_variant:
        return True
    return onednn_in_newest and versions.release(version) >= (1, 7)


def wiring_requirement(plan: InstallPlan) -> str | None:
    """The ``kmx-mxnet-cuda-libs==VERSION`` requirement in *plan*, if any."""
    for requirement in plan.requirements:
        if re.match(rf"{re.escape(WIRING_DIST)}==", requirement):
            return requirement
    return None
