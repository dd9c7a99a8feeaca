"""Checks for NVIDIA GPUs: a CUDA flavor against the driver and the GPUs' compute
capabilities, and cuDNN autotuning."""

from __future__ import annotations

from collections.abc import Iterator

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


def cuda_flavor_findings(
    ctx: Context, d: Distribution, flavor: Wheel, why: str
) -> Iterator[Finding]:
    """An installed CUDA flavor against the driver and every GPU's compute capability.
    *flavor*: the flavor's newest row; the installed release's own row is used when the
    table has it. *why*: the advice's own reason, appended to each detail."""
    rec, hw = ctx.rec, ctx.hw
    installed = f"{d.name} {d.version}"
    if not hw.gpus or hw.nvidia is None:
        yield Finding(
            "mxnet",
            FAIL,
            f"{installed} is a CUDA {flavor.cuda} build, but this box has no NVIDIA GPU: "
            "import mxnet fails without libcuda",
            f"{hw.origin}: {hw.gpu_summary}; " + why,
            ctx.install_mxnet(),
        )
        return
    platform = platform_of(hw)
    row = wheel_for(d.name, d.version, platform) or wheel_for(d.name, d.version)
    known = row is not None
    row = row or flavor
    driver, cuda = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    route = rules.driver_route(row, driver, cuda)
    if route is None:
        need = rules.minimum_driver(row.cuda or "", row.platform) or "a newer one"
        compat = (
            f" ({MINOR_COMPAT_FLOOR[rules.os_family(row.platform)]} through CUDA 11 "
            "minor-version compatibility)"
            if rules.cap(row.cuda or "0")[0] == 11
            else ""
        )
        yield Finding(
            "mxnet",
            FAIL,
            f"{installed} needs CUDA {row.cuda}, newer than the driver supports",
            f"{hw.origin}: driver {driver} supports CUDA {cuda}; CUDA {row.cuda} needs driver "
            f"{need} or newer{compat} (NVIDIA CUDA release notes); " + why,
            ctx.install_mxnet(),
        )
        return
    code = {g.index: rules.code_for(row, g.compute_capability) for g in hw.gpus}
    source = (
        rules.describe_code(row)
        if known
        else (
            f"{rules.describe_code(row)} (the newest {d.name}; {d.version} itself is not in "
            "the table)"
        )
    )
    uncovered = [g for g in hw.gpus if code[g.index] is None]
    if uncovered:
        gpus = ", ".join(f"{g.name} ({g.compute_capability})" for g in uncovered)
        detail = (
            f"{hw.origin}: {gpus}; {d.name} {d.version} carries {source}, so GPU work fails with "
            f'"no kernel image is available for execution on the device"; ' + why
        )
        if rec.build_from_source:
            detail += "\n" + rec.build_from_source
        yield Finding(
            "mxnet", FAIL, f"{installed} has no kernels for {gpus}", detail, ctx.install_mxnet()
        )
        return
    jit = [g for g in hw.gpus if code[g.index] == rules.PTX]
    if jit:
        gpus = ", ".join(f"{g.name} ({g.compute_capability})" for g in jit)
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} runs on {gpus} only through the driver's JIT compilation of its PTX",
            f"{hw.origin}: {d.name} {d.version} carries {source}; kernel bundles without PTX "
            'fail with "no kernel image is available", and the first run compiles every kernel '
            "(not run on such a GPU here); " + why,
            ctx.install_mxnet(),
        )
        return
    if (
        route == rules.MINOR_COMPAT
        and ctx.env.get("MXNET_USE_FUSION") != "0"
        and not _fusion_wired(ctx)
    ):
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} runs here only through CUDA 11 minor-version compatibility",
            f"{hw.origin}: driver {driver} supports CUDA {cuda}; that cannot load PTX newer than "
            "the driver, which MXNet's run-time fused kernels (NVRTC) produce; " + why,
            "export MXNET_USE_FUSION=0",
        )
        return
    if rec.gpu and versions.key(d.version) < versions.key(rec.version):
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} runs here, but {rec.package} {rec.version} is newer and fits too",
            why,
            ctx.install_mxnet(),
        )
        return
    yield Finding(
        "mxnet",
        OK,
        f"{installed} runs on every GPU here",
        f"{hw.origin}: {hw.gpu_summary}; {d.name} {d.version} carries {source}",
    )


def _fusion_wired(ctx: Context) -> bool:
    report = ctx.target.cuda_libs or {}
    wiring = report.get("wiring") or {}
    return (wiring.get("environment") or {}).get("MXNET_USE_FUSION") == "0"
