"""install-mxnet's check in a fresh process: dot, FullyConnected and Convolution besides
the element-wise operation, a process killed by a signal named with its step, and (slow
tier) a CPU without AVX for real under ``qemu-x86_64 -cpu Nehalem``: mxnet 1.9.1 dies in
dot, mxnet-native 1.8.0.post0 passes."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from kmx_tune.dists import Distribution
from kmx_tune.install.pip import pip_list
from kmx_tune.install.plan import InstallPlan, make_plan
from kmx_tune.install.verify import OPS, judge, run_check, verify
from tests.test_cuda_libs import target_with
from tests.venvs import make_venv

SITE = "/venv/lib/python3.11/site-packages"


def plan(package: str = "mxnet", version: str = "1.9.1", **kw: Any) -> InstallPlan:
    return make_plan(
        target_with(),
        package=package,
        version=version,
        requirements=(f"{package}=={version}", "numpy<1.24"),
        **kw,
    )


def installed(name: str = "mxnet", version: str = "1.9.1") -> dict[str, Distribution]:
    return {name: Distribution(name, version, SITE)}


def report(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "import_error": None,
        "mxnet_version": "1.9.1",
        "mxnet_file": f"{SITE}/mxnet/__init__.py",
        "features": {"CUDA": False, "MKLDNN": True},
        "cpu_ops": dict(OPS),
        "cpu_op_errors": {},
        "cpu_op": 8.0,
    }
    data.update(over)
    return data


def test_all_four_operations_must_give_their_sums() -> None:
    assert judge(plan(), report(), installed()).ok
    died = report(cpu_ops={**OPS, "dot": None}, cpu_op_errors={"dot": "MXNetError: boom"})
    v = judge(plan(), died, installed())
    assert v.problems == ("dot on cpu failed: MXNetError: boom",)
    wrong = judge(plan(), report(cpu_ops={**OPS, "convolution": 1.0}), installed())
    assert wrong.problems == ("convolution on cpu failed: gave 1.0, expected 42336.0",)


def test_a_gpu_flavor_runs_the_operations_on_gpu_too_and_names_the_libraries() -> None:
    gpu_plan = plan("mxnet-cu112", gpu=True)
    libs = {"libcudnn.so.8": "/venv/site/nvidia/cudnn/lib/libcudnn.so.8"}
    good = report(
        features={"CUDA": True, "MKLDNN": True},
        num_gpus=1,
        gpu_ops=dict(OPS),
        cuda_libraries=libs,
        cuda_library_versions={"libcudnn.so.8": "8.9.6.50"},
    )
    v = judge(gpu_plan, good, installed("mxnet-cu112"))
    assert v.ok and v.cuda_libraries == libs
    assert v.to_json()["cuda_library_versions"] == {"libcudnn.so.8": "8.9.6.50"}
    assert v.to_json()["operations"]["dot on gpu"] == OPS["dot"]
    bad = {
        **good,
        "gpu_ops": {**OPS, "fully_connected": None},
        "gpu_op_errors": {"fully_connected": "no kernel image is available"},
    }
    assert judge(gpu_plan, bad, installed("mxnet-cu112")).problems == (
        "fully_connected on gpu(0) failed: no kernel image is available",
    )


def test_a_missing_cuda_library_at_import_points_at_doctor() -> None:
    err = "OSError: libcudnn.so.8: cannot open shared object file: No such file or directory"
    v = judge(plan("mxnet-cu112", gpu=True), report(import_error=err), installed("mxnet-cu112"))
    assert (
        "libcudnn.so.8 is not found by the dynamic loader: `kmx-tune doctor --python"
        in v.problems[0]
    )


def test_wiring_errors_are_problems() -> None:
    v = judge(plan(), report(wiring={"loaded": [], "errors": ["x.so: bad ELF"]}), installed())
    assert v.problems == ("kmx-tune's CUDA library wiring could not load x.so: bad ELF",)


def fake_python(tmp_path: Path, body: str) -> Path:
    """An executable standing in for a target Python: it runs *body* in a real Python
    (so kmx_verify_mxnet.py's steps can be imitated) and may kill itself."""
    path = tmp_path / "python"
    path.write_text(f"#!{sys.executable}\nimport os, signal, sys\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_a_process_killed_by_sigill_names_the_signal_and_the_step(tmp_path: Path) -> None:
    python = fake_python(
        tmp_path,
        "sys.stderr.write('kmx-step: import mxnet\\nkmx-step: dot on cpu\\n'); sys.stderr.flush()\n"
        "os.kill(os.getpid(), signal.SIGILL)",
    )
    data = run_check(str(python), gpu=False)
    assert data["crash"].startswith("the check process was killed by SIGILL (illegal instruction")
    assert data["crash"].endswith("during dot on cpu")
    v = judge(plan(), data, installed())
    assert v.problems == (data["crash"],)


def test_a_process_that_exits_during_import_says_so(tmp_path: Path) -> None:
    python = fake_python(
        tmp_path, "sys.stderr.write('kmx-step: import mxnet\\nFatal: bad\\n'); sys.exit(3)"
    )
    v = verify(_with_python(plan(), python), installed())
    assert v.problems == (
        "the check process was exited with status 3 (Fatal: bad) during import mxnet",
    )


def _with_python(p: InstallPlan, python: Path) -> InstallPlan:
    import dataclasses

    return dataclasses.replace(p, python=str(python))


# --------------------------------------------------- a CPU without AVX, for real


def _qemu_python(tmp_path: Path, venv_python: Path) -> Path:
    """A "python" that runs the venv's interpreter on an emulated Nehalem CPU (no AVX).
    numpy's bundled OpenBLAS picks its kernels from CPUID and, under qemu-user, picks
    one Nehalem cannot run (it dies in `import numpy`; numpy runs on real Nehalem
    hardware): OPENBLAS_CORETYPE=Nehalem makes it pick the emulated CPU's own. mxnet
    1.9.1's OpenBLAS still dies in dot: AVX in its interface code, not in a kernel."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        pytest.skip(
            "needs qemu-x86_64 (Debian: apt-get install qemu-user) to emulate a CPU without AVX"
        )
    tmp_path.mkdir(parents=True, exist_ok=True)
    wrapper = tmp_path / "nehalem-python"
    wrapper.write_text(
        f'#!/bin/sh\nOPENBLAS_CORETYPE=Nehalem exec {qemu} -cpu Nehalem {venv_python} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@pytest.mark.venv
def test_without_avx_mxnet_191_dies_in_dot_and_mxnet_native_passes(tmp_path: Path) -> None:
    mx = make_venv(tmp_path / "mx", ["mxnet==1.9.1", "numpy==1.23.5"])
    native = make_venv(tmp_path / "native", ["mxnet-native==1.8.0.post0", "numpy==1.23.5"])
    env_before = dict(os.environ)
    died = verify(_with_python(plan(), _qemu_python(tmp_path / "a", mx)), pip_list(str(mx)))
    sigill = "the check process was killed by SIGILL"
    assert any(p.startswith(sigill) and p.endswith("during dot on cpu") for p in died.problems), (
        died.problems
    )
    ok = verify(
        _with_python(plan("mxnet-native", "1.8.0.post0"), _qemu_python(tmp_path / "b", native)),
        pip_list(str(native)),
    )
    assert ok.ok, ok.problems
    assert ok.ops["dot on cpu"] == OPS["dot"] and ok.ops["convolution on cpu"] == OPS["convolution"]
    assert dict(os.environ) == env_before
