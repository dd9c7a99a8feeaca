"""doctor's check that every library libmxnet.so needs resolves: for real, in a venv
holding a fake CUDA flavor (a libmxnet.so built here that needs libcudart.so.11.0 and
libcuda.so.1), and on recorded reports for the cases this machine cannot show."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kmx_tune import keras_config
from kmx_tune.doctor import Finding, Report, diagnose
from kmx_tune.hardware import HardwareProfile, load_profile
from kmx_tune.install import cuda_wiring
from kmx_tune.target import RecordedTarget, Target, TargetInfo
from tests.hwfakes import profile_path
from tests.test_cuda_libs import _libs, _pip
from tests.test_elf import build

RTX = "rtx3090-driver-535"


def hw(name: str = RTX) -> HardwareProfile:
    return dataclasses.replace(load_profile(profile_path(name)), file=None, source="probed")


def check(target: TargetInfo, home: Path, hardware: str = RTX, **env: str) -> Report:
    env = {"HOME": str(home), **env}
    state = keras_config.read(env=env)
    return diagnose(target, hw(hardware), env=env, keras_json=state)


def finding(report: Report, id_: str = "mxnet.libraries") -> Finding:
    found = [f for f in report.findings if f.id == id_]
    assert found, [f.id for f in report.findings]
    return found[0]


@pytest.fixture()
def cuda_venv(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(python, site-packages, driver folder): a venv with an "mxnet-cu112 1.9.1" whose
    libmxnet.so needs libcudart.so.11.0 (in site-packages/nvidia/cuda_runtime/lib, as
    NVIDIA's wheel puts it) and libcuda.so.1 (in a folder standing for the driver's)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = next((venv / "lib").glob("python3*/site-packages"))
    cudart = build(site / "nvidia/cuda_runtime/lib/libcudart.so.11.0", soname="libcudart.so.11.0")
    driver = build(tmp_path / "driver/libcuda.so.1", soname="libcuda.so.1")
    build(site / "mxnet/libmxnet.so", soname="libmxnet.so", needs=(cudart, driver), rpath="$ORIGIN")
    (site / "mxnet/__init__.py").write_text("")
    info = site / "mxnet_cu112-1.9.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mxnet-cu112\nVersion: 1.9.1\n\n")
    return python, site, driver.parent


def facts(python: Path, **env: str) -> TargetInfo:
    run_env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    run_env.update(env)
    return Target(str(python)).facts(env=run_env)


def test_a_library_no_folder_holds_fails_naming_it_and_the_fix(
    cuda_venv: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    python, _, driver = cuda_venv
    target = facts(python, LD_LIBRARY_PATH=str(driver))
    f = finding(check(target, tmp_path, LD_LIBRARY_PATH=str(driver)))
    assert f.status == "fail"
    assert f.title == (
        "mxnet-cu112 1.9.1 cannot load: libmxnet.so needs libcudart.so.11.0, which the "
        "dynamic loader does not find"
    )
    assert "libcudart.so.11.0 (needed by libmxnet.so): not found" in f.detail
    assert f"LD_LIBRARY_PATH ({driver})" in f.detail
    assert f.fix is not None and f.fix.endswith(
        "--flavor mxnet-cu112 --version 1.9.1 --cuda-libs pip"
    )


def test_the_wiring_and_ld_library_path_are_where_libraries_come_from(
    cuda_venv: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    python, site, driver = cuda_venv
    wheel = cuda_wiring.build(_libs("cuda_runtime", "libcudart.so.11.0"), "mxnet-cu112==1.9.1")
    _pip(python, "install", "--no-deps", "--no-index", str(wheel))
    f = finding(check(facts(python, LD_LIBRARY_PATH=str(driver)), tmp_path))
    assert f.status == "ok" and f.title == "every library mxnet-cu112 1.9.1 needs resolves"
    cudart = site / "nvidia/cuda_runtime/lib/libcudart.so.11.0"
    assert f"libcudart.so.11.0 -> {cudart} (kmx-tune's wiring (kmx-mxnet-cuda-libs))" in f.detail
    assert f"libcuda.so.1 -> {driver}/libcuda.so.1 (LD_LIBRARY_PATH)" in f.detail
    assert "kmx-tune's wiring: present" in f.detail
    # without the driver's folder only libcuda.so.1 is missing: the driver's own library
    alone = finding(check(facts(python), tmp_path))
    assert alone.status == "fail" and "needs the NVIDIA driver's libcuda.so.1" in alone.title


# ------------------------------------------------------------ recorded reports


def recorded(*dists: tuple[str, str], cuda_libs: dict[str, Any] | None) -> TargetInfo:
    raw = {
        "executable": "/venv/bin/python",
        "version": [3, 8, 18],
        "implementation": "CPython",
        "platform": "linux",
        "machine": "x86_64",
        "prefix": "/venv",
        "base_prefix": "/usr",
        "distributions": {
            n.lower(): {"name": n, "version": v, "location": "/venv/site"} for n, v in dists
        },
        "pip_module": True,
        "keras": {"module_path": None, "has_mxnet_backend": False},
        "deep": None,
        "cuda_libs": cuda_libs,
    }
    return RecordedTarget.from_report("/venv/bin/python", raw).facts()


def lib(soname: str, path: str | None, how: str = "ld.so.cache", **extra: Any) -> dict[str, Any]:
    cuda = soname.startswith(("libcu", "libnv", "libnccl"))
    return {
        "soname": soname,
        "needed_by": "libmxnet.so",
        "direct": True,
        "path": path,
        "how": how,
        "cuda": cuda,
        **extra,
    }


def report(*libraries: dict[str, Any], **over: Any) -> dict[str, Any]:
    data = {
        "mxnet_folder": "/venv/site/mxnet",
        "library": "/venv/site/mxnet/libmxnet.so",
        "error": None,
        "rpath": ["${ORIGIN}"],
        "runpath": None,
        "libraries": list(libraries),
        "wiring": None,
        "ld_library_path": None,
    }
    data.update(over)
    return data


def test_a_system_library_flavor_names_what_the_system_must_provide(tmp_path: Path) -> None:
    t = recorded(
        ("mxnet-cu110", "1.9.1"),
        ("numpy", "1.23.5"),
        cuda_libs=report(
            lib("libnvrtc.so.11.0", None),
            lib("libcudnn.so.8", None),
            lib("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
        ),
    )
    f = finding(check(t, tmp_path, "a100-driver-450.80"))
    assert f.status == "fail" and "libcudnn.so.8, libnvrtc.so.11.0" in f.title
    assert (
        "the system must provide: CUDA 11.0 runtime libraries + cuDNN 8 for CUDA 11.0" in f.detail
    )
    assert f.fix is not None and f.fix.startswith("apt-get install cuda-libraries-11-0")


def test_an_nvrtc_newer_than_the_drivers_cuda_wants_fusion_off(tmp_path: Path) -> None:
    libs = report(
        lib(
            "libnvrtc.so.11.2",
            "/venv/site/nvidia/cuda_nvrtc/lib/libnvrtc.so.11.2",
            "LD_LIBRARY_PATH",
            version="11.8.89",
            package="nvidia-cuda-nvrtc-cu11",
        ),
        lib("libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"),
    )
    t = recorded(("mxnet-cu112", "1.9.1"), ("numpy", "1.23.5"), cuda_libs=libs)
    r = check(t, tmp_path, "rtx3090-driver-455")
    (fusion,) = [f for f in r.findings if f.id == "env.MXNET_USE_FUSION"]
    assert fusion.status == "warn" and fusion.fix == "export MXNET_USE_FUSION=0"
    ok = check(t, tmp_path, "rtx3090-driver-455", MXNET_USE_FUSION="0")
    assert not [f for f in ok.findings if f.id == "env.MXNET_USE_FUSION"]
    assert not [f for f in check(t, tmp_path).findings if f.id == "env.MXNET_USE_FUSION"]


def test_wiring_left_without_mxnet_and_an_empty_placeholder_wheel(tmp_path: Path) -> None:
    left = recorded(("kmx-mxnet-cuda-libs", "1.0+cu117"), cuda_libs=None)
    f = finding(check(left, tmp_path))
    assert f.status == "warn" and "left without MXNet" in f.title
    assert f.fix == "/venv/bin/python -m pip uninstall -y kmx-mxnet-cuda-libs"
    empty = recorded(
        ("mxnet-cu117", "1.0.0"), cuda_libs=report(error="no mxnet package on sys.path")
    )
    f = finding(check(empty, tmp_path))
    assert f.status == "fail"
    assert f.title == (
        "mxnet-cu117 1.0.0 is an empty placeholder wheel (dist-info only) without the mxnet "
        "package: import mxnet fails"
    )
