"""Checks of the MXNet flavor and the numpy it needs."""

from __future__ import annotations

from collections.abc import Iterator

from kmx_tune import versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.doctor.gpu import cuda_flavor_findings
from kmx_tune.doctor.model import FAIL, OK, WARN, Context, Finding
from kmx_tune.flavors import FLAVORS, NUMPY_PIN, PY_NEWEST_NUMPY_PIN

_NO_NUMPY_WHEEL = (
    f"mxnet 1.9.1 needs {NUMPY_PIN}, which has no wheel for this Python (numpy 1.23 stops at "
    "Python 3.11; building it from source fails), so pip cannot install it here"
)


def flavor_detail(ctx: Context) -> str:
    rec = ctx.rec
    if not rec.installable:
        return rec.reasons[0]
    return f"recommended: {rec.package} {rec.version} because {rec.reasons[0]}"


def check_mxnet_flavor(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    rec = ctx.rec
    if not dists:
        if not rec.installable:
            yield Finding(
                "mxnet",
                FAIL,
                "MXNet is not installed, and no MXNet wheel installs here",
                flavor_detail(ctx),
                "use a Linux x86-64 machine or container (or build MXNet from source)",
            )
            return
        if ctx.py > PY_NEWEST_NUMPY_PIN:
            yield Finding(
                "mxnet",
                FAIL,
                f"MXNet is not installed, and mxnet {rec.version} cannot be on {ctx.py_str}",
                f"detected: {ctx.py_str} at {ctx.python}; {_NO_NUMPY_WHEEL}",
                ctx.old_python_route(),
            )
            return
        yield Finding(
            "mxnet", FAIL, "MXNet is not installed", flavor_detail(ctx), ctx.install_mxnet()
        )
        return
    if len(dists) > 1:
        listed = ", ".join(f"{d.name} {d.version}" for d in dists)
        yield Finding(
            "mxnet",
            FAIL,
            f"{len(dists)} MXNet flavors are installed at once: {listed}",
            "they all install the same `mxnet` module, so their files overwrite each other "
            f"(detected: pip metadata in {dists[0].location or ctx.target.prefix}); "
            + flavor_detail(ctx),
            ctx.pip("uninstall", "-y", *(d.name for d in dists)) + " && " + ctx.install_mxnet(),
        )
        return
    d = dists[0]
    flavor = FLAVORS.get(normalize(d.name))
    installed = f"{d.name} {d.version}"
    if flavor is None:
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is not a flavor kmx-tune knows",
            flavor_detail(ctx),
            ctx.install_mxnet(),
        )
        return
    if flavor.cuda is None:
        yield from _cpu_flavor(ctx, d, installed)
        return
    yield from cuda_flavor_findings(ctx, d, flavor, flavor_detail(ctx))


def _cpu_flavor(ctx: Context, d: Distribution, installed: str) -> Iterator[Finding]:
    rec = ctx.rec
    if rec.gpu:
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is a CPU build on a box with a usable NVIDIA GPU",
            flavor_detail(ctx),
            ctx.install_mxnet(),
        )
    elif rec.installable and versions.key(d.version) < versions.key(rec.version):
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is older than {rec.package} {rec.version}, the newest CPU build"
            + (" (MKL-DNN built in)" if FLAVORS[rec.package].onednn else ""),
            flavor_detail(ctx),
            ctx.install_mxnet(),
        )
    elif rec.installable and normalize(d.name) != rec.package:
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is installed; the CPU build for this box is {rec.package} {rec.version}",
            flavor_detail(ctx),
            ctx.install_mxnet(),
        )
    else:
        detail = flavor_detail(ctx)
        if rec.build_from_source:
            detail += "\nFor GPU training: " + rec.build_from_source
        yield Finding("mxnet", OK, f"{installed} is the recommended flavor", detail)


def check_numpy(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    if not dists:
        return  # installing MXNet (the fix above) pins numpy too
    mx = dists[0]
    numpy = ctx.target.numpy_version
    fix = ctx.pip("install", NUMPY_PIN)
    no_wheel = ""
    if ctx.py > PY_NEWEST_NUMPY_PIN:
        fix = ctx.old_python_route()
        no_wheel = f"; {_NO_NUMPY_WHEEL.replace('this Python', ctx.py_str)}"
    if numpy is None:
        yield Finding(
            "numpy",
            FAIL,
            f"numpy is not installed: import mxnet fails without it ({mx.name} {mx.version})",
            f"detected: no numpy distribution in {ctx.python}" + no_wheel,
            fix,
        )
    elif versions.at_least(numpy, "1.24"):
        how = (
            "and mxnet's own requirement (numpy<2.0.0) lets pip install it"
            if not versions.at_least(numpy, "2")
            else "mxnet's own requirement is numpy<2.0.0, so another package's "
            "requirement pulled it in"
        )
        yield Finding(
            "numpy",
            FAIL,
            f"numpy {numpy} breaks {mx.name} {mx.version}: import mxnet fails with numpy >= 1.24",
            f"detected: numpy {numpy} in {ctx.python}; numpy 1.24 removed np.bool, which mxnet "
            "uses (AttributeError: module 'numpy' has no attribute 'bool'; mxnet issue 21165); "
            + how
            + no_wheel,
            fix,
        )
    else:
        yield Finding(
            "numpy",
            OK,
            f"numpy {numpy} works with {mx.name} {mx.version}",
            f"detected: numpy {numpy}; mxnet needs numpy<1.24 (mxnet issue 21165)",
        )


def check_mxnet_runtime(ctx: Context) -> Iterator[Finding]:
    rt = ctx.target.runtime
    if rt is None or not ctx.target.mxnet_distributions:
        return
    if rt.mxnet_import_error:
        numpy_related = "numpy" in rt.mxnet_import_error or (
            versions.at_least(ctx.target.numpy_version, "1.24")
        )
        yield Finding(
            "mxnet.import",
            FAIL,
            "import mxnet fails",
            f"detected (--deep): {rt.mxnet_import_error}",
            ctx.old_python_route()
            if ctx.py > PY_NEWEST_NUMPY_PIN
            else ctx.pip("install", NUMPY_PIN)
            if numpy_related
            else ctx.install_mxnet(),
        )
        return
    features = rt.features or {}
    on = sorted(name for name, enabled in features.items() if enabled)
    shown = [n for n in ("CUDA", "CUDNN", "MKLDNN", "OPENMP", "BLAS_OPEN") if n in on]
    detail = f"detected (--deep): mxnet {rt.mxnet_version}, features {' '.join(shown) or '-'}"
    detail += f", {rt.num_gpus if rt.num_gpus is not None else '?'} GPU(s) visible"
    if features.get("CUDA") and ctx.hw.gpus and not rt.num_gpus:
        yield Finding(
            "mxnet.import",
            FAIL,
            "this CUDA build of mxnet sees no GPU",
            detail,
            ctx.install_mxnet(),
        )
    elif features and not features.get("CUDA") and not features.get("MKLDNN"):
        yield Finding(
            "mxnet.import",
            WARN,
            "this mxnet has neither CUDA nor MKL-DNN: the slowest build",
            detail,
            ctx.install_mxnet(),
        )
    else:
        yield Finding("mxnet.import", OK, f"import mxnet works ({rt.mxnet_version})", detail)
