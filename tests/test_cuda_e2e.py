"""A GPU MXNet on a driver-only box, for real (slow tier): mxnet-cu112 1.9.1 and NVIDIA's
CUDA 11 pip wheels installed into a throwaway venv, with a stub libcuda.so.1 built here
standing in for the driver (no GPU on this machine: it exports the driver symbols
libmxnet.so needs and reports no device). The downloads are ~0.5 GB (mxnet-cu112) and
~1.6 GB (the libraries); pip's cache keeps them for later runs.

- install-mxnet installs it all, the check in a fresh process imports mxnet (CUDA, cuDNN
  and NCCL built in, every CUDA library loaded from the venv), finds no GPU, and rolls
  back: pip lists exactly what was there before;
- installed as planned, ``import mxnet`` works in a new process with no LD_LIBRARY_PATH
  for the CUDA libraries (the stub driver's folder stands for the driver's own), doctor
  says every library resolves and where from, and without the wiring it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import kmx
from tests.hwfakes import profile_path
from tests.test_elf import build
from tests.venvs import pip_freeze, pyenv_python

pytestmark = [
    pytest.mark.venv,
    pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for the stub driver"),
]

RTX = str(profile_path("rtx3090-driver-535"))
CUDA_SONAMES = {
    "libcudart.so.11.0",
    "libcublas.so.11",
    "libcublasLt.so.11",
    "libcufft.so.10",
    "libcurand.so.10",
    "libcusolver.so.11",
    "libnvrtc.so.11.2",
    "libcudnn.so.8",
    "libnccl.so.2",
    "libnvToolsExt.so.1",
}

STUB_DRIVER = """
/* Stands in for the NVIDIA driver's libcuda.so.1 on a machine without a GPU: the
   symbols libmxnet.so and the CUDA runtime look up, each answering "no device". */
#define NO_DEVICE 100
int cuInit(unsigned int f) { (void)f; return NO_DEVICE; }
int cuDriverGetVersion(int *v) { if (v) *v = 12020; return 0; }
int cuDeviceGetCount(int *n) { if (n) *n = 0; return NO_DEVICE; }
int cuGetProcAddress(const char *s, void **p, int v, unsigned long long f)
  { (void)s; (void)v; (void)f; if (p) *p = 0; return 500; }
int cuGetExportTable(const void **t, const void *id) { (void)id; if (t) *t = 0; return NO_DEVICE; }
int cuGetErrorString(int e, const char **s) { (void)e; if (s) *s = "no device (stub)"; return 0; }
int cuDeviceGet(int *d, int o) { (void)d; (void)o; return NO_DEVICE; }
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)c; (void)d; return NO_DEVICE; }
int cuGraphKernelNodeGetParams(void *n, void *p) { (void)n; (void)p; return NO_DEVICE; }
int cuGraphNodeGetType(void *n, int *t) { (void)n; (void)t; return NO_DEVICE; }
int cuLaunchKernel(void *f, unsigned a, unsigned b, unsigned c, unsigned d, unsigned e,
                   unsigned g, unsigned s, void *st, void **k, void **x) { return NO_DEVICE; }
int cuModuleGetFunction(void **f, void *m, const char *n) { return NO_DEVICE; }
int cuModuleLoadData(void **m, const void *i) { return NO_DEVICE; }
int cuModuleLoadDataEx(void **m, const void *i, unsigned n, void *o, void **v) { return NO_DEVICE; }
int cuModuleUnload(void *m) { return NO_DEVICE; }
"""


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def test_mxnet_cu112_with_nvidia_wheels_imports_without_ld_library_path(tmp_path: Path) -> None:
    driver = build(tmp_path / "driver" / "libcuda.so.1", STUB_DRIVER, soname="libcuda.so.1")
    venv = tmp_path / "v"
    subprocess.run([str(pyenv_python("3.8")), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = next((venv / "lib").glob("python3*/site-packages"))
    before, before_files = pip_freeze(python), files_under(site)
    only_driver = {"LD_LIBRARY_PATH": str(driver.parent)}

    # 1. install-mxnet: installed, checked in a fresh process (no GPU there), rolled back
    result = kmx(
        "install-mxnet",
        "--python",
        str(python),
        "--hardware",
        RTX,
        "--flavor",
        "mxnet-cu112",
        "--yes",
        "--json",
        env=only_driver,
    )
    data = json.loads(result.stdout)
    assert (result.exit_code, data["outcome"]) == (1, "rolled-back"), result.stderr
    assert data["failure"] == "verification failed: mx.context.num_gpus() is 0: MXNet sees no GPU"
    check = data["verification"]
    assert check["features"]["CUDA"] and check["features"]["CUDNN"] and check["features"]["NCCL"]
    loaded = check["cuda_libraries"]
    assert set(loaded) >= CUDA_SONAMES
    assert all(loaded[s].startswith(f"{site}/nvidia/") for s in CUDA_SONAMES)
    assert loaded["libcuda.so.1"] == str(driver)
    assert check["cuda_library_versions"]["libcudnn.so.8"] == "8.9.6.50"
    assert check["operations"]["dot on cpu"] == 262144.0
    assert pip_freeze(python) == before
    assert files_under(site) == before_files  # (pip may leave the emptied nvidia/ folder)

    # 2. the same plan installed and kept: a new process imports it, doctor agrees
    dry = kmx(
        "install-mxnet",
        "--python",
        str(python),
        "--hardware",
        RTX,
        "--flavor",
        "mxnet-cu112",
        "--dry-run",
        "--json",
    )
    plan = json.loads(dry.stdout)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *plan["requirements"]], check=True)
    clean = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    imported = subprocess.run(
        [str(python), "-c", "import mxnet; print(mxnet.__version__, mxnet.context.num_gpus())"],
        capture_output=True,
        text=True,
        env={**clean, **only_driver},
    )
    assert imported.stdout.split() == ["1.9.1", "0"], imported.stderr
    doctor = kmx("doctor", "--python", str(python), "--hardware", RTX, "--json", env=only_driver)
    (libs,) = [f for f in json.loads(doctor.stdout)["findings"] if f["id"] == "mxnet.libraries"]
    assert (libs["status"], libs["title"]) == (
        "ok",
        "every library mxnet-cu112 1.9.1 needs resolves",
    )
    assert "libcudnn.so.8 -> " in libs["detail"] and "kmx-tune's wiring" in libs["detail"]
    assert "nvidia-cudnn-cu11, version 8.9.6.50" in libs["detail"]

    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "-y", "-q", "kmx-mxnet-cuda-libs"], check=True
    )
    without = subprocess.run(
        [str(python), "-c", "import mxnet"],
        capture_output=True,
        text=True,
        env={**clean, **only_driver},
    )
    assert without.returncode != 0 and "cannot open shared object file" in without.stderr
