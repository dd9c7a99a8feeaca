"""The install plan: what will change in the target and why. Pure: built from the
target's facts and the hardware profile without touching anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kmx_tune import versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import UsageError
from kmx_tune.target import TargetInfo

if TYPE_CHECKING:
    from kmx_tune.hardware import HardwareProfile


@dataclass(frozen=True)
class InstallPlan:
    """What will change in the target and why. Built without touching anything."""

    python: str
    python_version: str
    platform: str
    package: str
    version: str
    requirements: tuple[str, ...]  # what pip installs: "mxnet==1.9.1", "numpy<1.24"
    uninstall: tuple[Distribution, ...]  # every other MXNet distribution in the target
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    gpu: bool  # a CUDA flavor: verify CUDA, num_gpus() and an operation on gpu(0)
    expect_mkldnn: bool  # verify that MKLDNN is compiled in
    build_from_source: str | None = None
    installed: tuple[Distribution, ...] = ()  # the MXNet distributions there now
    numpy_version: str | None = None  # the numpy there now

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
            "build_from_source": self.build_from_source,
        }


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
) -> InstallPlan:
    """The plan for installing *package*==*version* into *target*. Pure: every other
    MXNet distribution goes, because all flavors write the same ``mxnet`` module and
    a second one silently overwrites the first one's files. When another flavor is
    there, *package* goes too even at the wanted version: uninstalling the other
    flavor deletes the files they share, and pip would then find *package*
    "already satisfied" and leave the broken module in place."""
    others = [d for d in target.mxnet_distributions if normalize(d.name) != normalize(package)]
    uninstall = target.mxnet_distributions if others else ()
    return InstallPlan(
        python=target.python,
        python_version=target.version_str,
        platform=f"{target.platform} {target.machine}",
        package=package,
        version=version,
        requirements=tuple(requirements),
        uninstall=uninstall,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        gpu=gpu,
        expect_mkldnn=expect_mkldnn,
        build_from_source=build_from_source,
        installed=target.mxnet_distributions,
        numpy_version=target.numpy_version,
    )


def plan_install(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    flavor: str | None = None,
    version: str | None = None,
    cpu_only: bool = False,
) -> InstallPlan:
    """The plan from the advisor for *hw* and the target's Python, unless ``--flavor``
    or ``--version`` overrides it. Pure. UsageError for an unknown flavor."""
    from kmx_tune.flavors import get_flavor, recommend, requirements_for

    advice = recommend(hw, (target.version[0], target.version[1]), cpu_only=cpu_only)
    if flavor is None and version is None:
        chosen = get_flavor(advice.package)
        return make_plan(
            target,
            package=advice.package,
            version=advice.version,
            requirements=advice.requirements,
            reasons=advice.reasons,
            warnings=advice.warnings,
            gpu=advice.gpu,
            expect_mkldnn=expects_mkldnn(chosen.mkl, chosen.onednn, advice.version),
            build_from_source=advice.build_from_source,
        )
    chosen = get_flavor(flavor) if flavor is not None else get_flavor(advice.package)
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
    release = version or chosen.newest
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
    if chosen.name == advice.package:
        warnings.extend(advice.warnings)
    else:
        why = advice.reasons[0] if advice.reasons else ""
        warnings.append(
            f"the advice for this machine is {advice.package}=={advice.version}"
            + (f" ({why})" if why else "")
        )
    return make_plan(
        target,
        package=chosen.name,
        version=release,
        requirements=requirements_for(chosen.name, release),
        reasons=reasons,
        warnings=warnings,
        gpu=chosen.cuda is not None,
        expect_mkldnn=expects_mkldnn(chosen.mkl, chosen.onednn, release),
        build_from_source=advice.build_from_source if chosen.name == advice.package else None,
    )


def expects_mkldnn(mkl_variant: bool, onednn_in_newest: bool, version: str) -> bool:
    """Whether this release of a flavor has MKL-DNN built in: the "-mkl" variants
    always; plain and CUDA builds from 1.7.0 on (MXNet NEWS.md, 1.7.0); never
    mxnet-native (the flavor's ``onednn`` is False)."""
    if mkl_variant:
        return True
    return onednn_in_newest and versions.release(version) >= (1, 7)
