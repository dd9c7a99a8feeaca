"""Check that every library the installed libmxnet.so needs resolves, the way the
dynamic loader will look for it (facts from kmx_cuda_libs.py, run in the target):
the CUDA, cuDNN and NCCL libraries no MXNet wheel ships, and the driver's libcuda.so.1."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from kmx_tune.dists import normalize
from kmx_tune.doctor.model import FAIL, OK, WARN, Context, Finding
from kmx_tune.flavors import FLAVORS, platform_of, wheel_for
from kmx_tune.flavors.cuda_libs import WIRING_DIST, pip_can_provide, plan_system
from kmx_tune.flavors.gpu import cap
from kmx_tune.flavors.table import DRIVER, LINUX_X86_64

ID = "mxnet.libraries"


def _where(lib: Mapping[str, Any]) -> str:
    extra = ", ".join(
        str(x)
        for x in (lib.get("package"), lib.get("version") and f"version {lib['version']}")
        if x
    )
    return f"{lib['soname']} -> {lib['path']} ({lib['how']}{'; ' + extra if extra else ''})"


def _searched(report: Mapping[str, Any]) -> str:
    rpath = " ".join(report.get("rpath") or []) or "none"
    ld_path = report.get("ld_library_path") or "unset"
    wiring = report.get("wiring")
    state = "not installed"
    if wiring:
        state = "off (KMX_MXNET_CUDA_LIBS)" if wiring.get("disabled") else "present"
    wired = f"kmx-tune's wiring: {state}"
    return (
        f"searched as ld.so does: RPATH of libmxnet.so ({rpath}), LD_LIBRARY_PATH ({ld_path}), "
        f"ld.so.cache, the system folders; {wired}"
    )


def check_cuda_libs(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    wiring = ctx.target.dist(WIRING_DIST)
    if not dists:
        if wiring is not None:
            yield Finding(
                ID,
                WARN,
                f"kmx-tune's CUDA library wiring ({wiring.name} {wiring.version}) is left "
                "without MXNet",
                "it only acts on `import mxnet`, so it does nothing now; remove it",
                ctx.pip("uninstall", "-y", wiring.name),
            )
        return
    report = ctx.target.cuda_libs
    if report is None or len(dists) > 1:
        return  # facts from an older run, or two flavors at once (the mxnet check says so)
    d = dists[0]
    installed = f"{d.name} {d.version}"
    if report.get("error"):
        if "no mxnet package" in report["error"] or "no libmxnet.so" in report["error"]:
            empty = (
                "an empty placeholder wheel (dist-info only) "
                if d.version.startswith("1.0.0")
                else ""
            )
            yield Finding(
                ID,
                FAIL,
                f"{installed} is {empty}without the mxnet package: import mxnet fails",
                f"detected: {report['error']} in {ctx.python}; unpinned installs of mxnet-cu111 "
                "and mxnet-cu113 ... cu117 pick such a 1.0.0 py3-none-any wheel",
                ctx.install_mxnet(),
            )
        else:
            yield Finding(ID, WARN, "could not read libmxnet.so's dependencies", report["error"])
        return
    flavor = FLAVORS.get(normalize(d.name))
    gpu = flavor is not None and flavor.cuda is not None
    libs: Sequence[Mapping[str, Any]] = report.get("libraries") or []
    missing = [lib for lib in libs if lib.get("path") is None]
    found_cuda = [lib for lib in libs if lib.get("path") and lib.get("cuda")]
    if missing:
        yield _missing(ctx, installed, d.name, d.version, gpu, report, missing)
        return
    if not gpu:
        return  # a CPU build whose libraries all resolve: nothing worth a line
    detail = [_searched(report), *(_where(lib) for lib in found_cuda)]
    environment = (report.get("wiring") or {}).get("environment") or {}
    if environment:
        detail.append(
            "set by the wiring for mxnet: " + ", ".join(f"{k}={v}" for k, v in environment.items())
        )
    yield Finding(ID, OK, f"every library {installed} needs resolves", "\n".join(detail))
    yield from _fusion(ctx, report, found_cuda, environment)


def _missing(
    ctx: Context,
    installed: str,
    name: str,
    version: str,
    gpu: bool,
    report: Mapping[str, Any],
    missing: Sequence[Mapping[str, Any]],
) -> Finding:
    names = sorted({lib["soname"] for lib in missing})
    detail = [_searched(report)]
    detail.extend(f"{lib['soname']} (needed by {lib['needed_by']}): not found" for lib in missing)
    if names == [DRIVER]:
        detail.append("libcuda.so.1 is the NVIDIA driver's own library")
        return Finding(
            ID,
            FAIL,
            f"{installed} needs the NVIDIA driver's libcuda.so.1, which is not found",
            "\n".join(detail),
            "install the NVIDIA driver (on Debian/Ubuntu: the nvidia-driver package of your "
            "release), or use a CPU flavor: " + ctx.install_mxnet() + " --cpu",
        )
    platform = platform_of(ctx.hw)
    row = wheel_for(name, version, LINUX_X86_64 if platform == LINUX_X86_64 else platform)
    fix = ctx.install_mxnet()
    if gpu and row is not None and row.needs:
        if not pip_can_provide(row) and platform == LINUX_X86_64:
            fix = shlex.join([*shlex.split(ctx.install_mxnet()), "--flavor", name,
                              "--version", version, "--cuda-libs", "pip"])  # fmt: skip
            detail.append(
                "NVIDIA publishes every one of them as a pip wheel: the fix installs them "
                "with kmx-tune's wiring (or install them and set LD_LIBRARY_PATH yourself)"
            )
        else:
            system = plan_system(row)
            detail.extend(f"the system must provide: {line}" for line in system.system)
            fix = system.system[1].split(": ", 1)[1]
    elif "libquadmath.so.0" in names:
        fix = "apt-get install libquadmath0  (Debian/Ubuntu; libquadmath on Fedora)"
    return Finding(
        ID,
        FAIL,
        f"{installed} cannot load: libmxnet.so needs {', '.join(names)}, which the dynamic "
        "loader does not find",
        "\n".join(detail),
        fix,
    )


def _fusion(
    ctx: Context,
    report: Mapping[str, Any],
    found: Sequence[Mapping[str, Any]],
    environment: Mapping[str, str],
) -> Iterator[Finding]:
    """NVRTC newer than the driver's CUDA: fused kernels' PTX would not load there."""
    nvidia = ctx.hw.nvidia
    nvrtc = next((lib for lib in found if lib["soname"].startswith("libnvrtc")), None)
    if nvidia is None or nvrtc is None or not nvrtc.get("version"):
        return
    try:
        newer = cap(str(nvrtc["version"])) > cap(nvidia.cuda_driver_version)
    except ValueError:
        return
    value = ctx.env.get("MXNET_USE_FUSION", environment.get("MXNET_USE_FUSION"))
    if newer and value != "0":
        yield Finding(
            "env.MXNET_USE_FUSION",
            WARN,
            f"NVRTC {nvrtc['version']} is newer than the driver's CUDA "
            f"{nvidia.cuda_driver_version}: MXNet's run-time fused kernels would not load",
            f"{ctx.hw.origin}: driver {nvidia.driver_version}; {_where(nvrtc)}; MXNet 1.9.1 "
            "compiles fused kernels with NVRTC into PTX, which an older driver cannot load",
            "export MXNET_USE_FUSION=0",
        )
