"""Checks for NVIDIA GPUs: a CUDA flavor against the driver and the GPUs' compute
capabilities, and cuDNN autotuning."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from kmx_tune import versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.doctor.model import FAIL, OK, WARN, Context, Finding
from kmx_tune.flavors import FLAVORS, Wheel, platform_of, wheel_for
from kmx_tune.flavors import gpu as rules
from kmx_tune.flavors.table import MINOR_COMPAT_FLOOR


def check_cudnn_autotune(ctx: Context) -> Iterator[Finding]:
    if not ctx.hw.gpus:
        return
    raw = ctx.env.get("MXNET_CUDNN_AUTOTUNE_DEFAULT")
    dists = ctx.target.mxnet_distributions
    flavors = [FLAVORS.get(normalize(d.name)) for d in dists]
    cpu_build = (
        all(f is not None and f.cuda is None for f in flavors)
        if dists
        else not ctx.rec.gpu  # nothing installed: the advice decides (CPU on an H100)
    )
    if cpu_build:
        if raw is not None and dists:
            installed = ", ".join(f"{d.name} {d.version}" for d in dists)
            yield Finding(
                "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
                OK,
                f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw.strip()} has no effect on {installed}, "
                "a CPU build",
                "from the environment; only CUDA builds use cuDNN",
            )
        return
    origin = f"{ctx.hw.origin}: {ctx.hw.gpu_summary}"
    if raw is None:
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            OK,
            "MXNET_CUDNN_AUTOTUNE_DEFAULT unset: cuDNN autotuning on (default 1)",
            f"{origin}; 2 picks the fastest convolution algorithm at the cost of memory",
        )
    elif raw.strip() == "0":
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            WARN,
            "MXNET_CUDNN_AUTOTUNE_DEFAULT=0 turns cuDNN autotuning off",
            f"from the environment; {origin}; convolutions may run slow algorithms",
            "export MXNET_CUDNN_AUTOTUNE_DEFAULT=1",
        )
    elif raw.strip() in ("1", "2"):
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            OK,
            f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw.strip()}",
            f"from the environment; {origin}",
        )
    else:
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            WARN,
            f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw} is not 0, 1 or 2",
            "from the environment; MXNet env_var reference",
            "export MXNET_CUDNN_AUTOTUNE_DEFAULT=1",
        )


@dataclass(frozen=True)
class _Installed:
    """What the CUDA-flavor rules look at, gathered once."""

    ctx: Context
    dist: Distribution
    row: Wheel  # the installed release's table row (or the flavor's newest)
    known: bool  # the table has the installed release itself
    why: str  # the advice's own reason, appended to each detail

    @property
    def name(self) -> str:
        return f"{self.dist.name} {self.dist.version}"

    @property
    def route(self) -> str | None:
        nvidia = self.ctx.hw.nvidia
        assert nvidia is not None  # _no_gpu runs first
        return rules.driver_route(self.row, nvidia.driver_version, nvidia.cuda_driver_version)

    @property
    def source(self) -> str:
        """Which GPU code the wheel carries, and where that fact comes from."""
        code = rules.describe_code(self.row)
        if self.known:
            return code
        return (
            f"{code} (the newest {self.dist.name}; {self.dist.version} itself is not in the table)"
        )

    def gpus_where(self, wanted: object) -> str:
        """The GPUs whose code in this wheel is *wanted* (None, PTX), named."""
        return ", ".join(
            f"{g.name} ({g.compute_capability})"
            for g in self.ctx.hw.gpus
            if rules.code_for(self.row, g.compute_capability) == wanted
        )

    def finding(self, status: str, title: str, detail: str, fix: str | None) -> Finding:
        return Finding("mxnet", status, title, detail, fix)


def _no_gpu(i: _Installed) -> Finding | None:
    hw = i.ctx.hw
    if hw.gpus and hw.nvidia is not None:
        return None
    return i.finding(
        FAIL,
        f"{i.name} is a CUDA {i.row.cuda} build, but this box has no NVIDIA GPU: "
        "import mxnet fails without libcuda",
        f"{hw.origin}: {hw.gpu_summary}; {i.why}",
        i.ctx.install_mxnet(),
    )


def _driver_too_old(i: _Installed) -> Finding | None:
    if i.route is not None:
        return None
    hw, row = i.ctx.hw, i.row
    assert hw.nvidia is not None
    need = rules.minimum_driver(row.cuda or "", row.platform) or "a newer one"
    compat = (
        f" ({MINOR_COMPAT_FLOOR[rules.os_family(row.platform)]} through CUDA 11 "
        "minor-version compatibility)"
        if rules.cap(row.cuda or "0")[0] == 11
        else ""
    )
    return i.finding(
        FAIL,
        f"{i.name} needs CUDA {row.cuda}, newer than the driver supports",
        f"{hw.origin}: driver {hw.nvidia.driver_version} supports CUDA "
        f"{hw.nvidia.cuda_driver_version}; CUDA {row.cuda} needs driver {need} or newer{compat} "
        f"(NVIDIA CUDA release notes); {i.why}",
        i.ctx.install_mxnet(),
    )


def _no_kernels(i: _Installed) -> Finding | None:
    gpus = i.gpus_where(None)
    if not gpus:
        return None
    detail = (
        f"{i.ctx.hw.origin}: {gpus}; {i.name} carries {i.source}, so GPU work fails with "
        f'"no kernel image is available for execution on the device"; {i.why}'
    )
    if i.ctx.rec.build_from_source:
        detail += "\n" + i.ctx.rec.build_from_source
    return i.finding(FAIL, f"{i.name} has no kernels for {gpus}", detail, i.ctx.install_mxnet())


def _ptx_only(i: _Installed) -> Finding | None:
    gpus = i.gpus_where(rules.PTX)
    if not gpus:
        return None
    return i.finding(
        WARN,
        f"{i.name} runs on {gpus} only through the driver's JIT compilation of its PTX",
        f"{i.ctx.hw.origin}: {i.name} carries {i.source}; kernel bundles without PTX fail "
        'with "no kernel image is available", and the first run compiles every kernel (not '
        f"run on such a GPU here); {i.why}",
        i.ctx.install_mxnet(),
    )


def _minor_compat(i: _Installed) -> Finding | None:
    ctx = i.ctx
    if (
        i.route != rules.MINOR_COMPAT
        or ctx.env.get("MXNET_USE_FUSION") == "0"
        or _fusion_wired(ctx)
    ):
        return None
    nvidia = ctx.hw.nvidia
    assert nvidia is not None
    return i.finding(
        WARN,
        f"{i.name} runs here only through CUDA 11 minor-version compatibility",
        f"{ctx.hw.origin}: driver {nvidia.driver_version} supports CUDA "
        f"{nvidia.cuda_driver_version}; that cannot load PTX newer than the driver, which "
        f"MXNet's run-time fused kernels (NVRTC) produce; {i.why}",
        "export MXNET_USE_FUSION=0",
    )


def _older_than_advice(i: _Installed) -> Finding | None:
    rec = i.ctx.rec
    if not rec.gpu or versions.key(i.dist.version) >= versions.key(rec.version):
        return None
    return i.finding(
        WARN,
        f"{i.name} runs here, but {rec.package} {rec.version} is newer and fits too",
        i.why,
        i.ctx.install_mxnet(),
    )


# The rules for an installed CUDA flavor, in order: the first that finds a problem is
# the finding. A new rule is one function and one entry.
CUDA_FLAVOR_RULES: tuple[Callable[[_Installed], Finding | None], ...] = (
    _no_gpu,
    _driver_too_old,
    _no_kernels,
    _ptx_only,
    _minor_compat,
    _older_than_advice,
)


def cuda_flavor_findings(
    ctx: Context, d: Distribution, flavor: Wheel, why: str
) -> Iterator[Finding]:
    """An installed CUDA flavor against the driver and every GPU's compute capability.
    *flavor*: the flavor's newest row; the installed release's own row is used when the
    table has it. *why*: the advice's own reason, appended to each detail."""
    row = wheel_for(d.name, d.version, platform_of(ctx.hw)) or wheel_for(d.name, d.version)
    installed = _Installed(ctx, d, row or flavor, row is not None, why)
    for rule in CUDA_FLAVOR_RULES:
        problem = rule(installed)
        if problem is not None:
            yield problem
            return
    yield installed.finding(
        OK,
        f"{installed.name} runs on every GPU here",
        f"{ctx.hw.origin}: {ctx.hw.gpu_summary}; {installed.name} carries {installed.source}",
        None,
    )


def _fusion_wired(ctx: Context) -> bool:
    report = ctx.target.cuda_libs or {}
    wiring = report.get("wiring") or {}
    return (wiring.get("environment") or {}).get("MXNET_USE_FUSION") == "0"
