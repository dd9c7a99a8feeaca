"""The CUDA libraries a flavor needs and how they get there: NVIDIA's pip wheels, pinned
and wired in by kmx-mxnet-cuda-libs, or the system. The wiring is tried for real in a
throwaway venv with a fake libmxnet.so (built here with gcc) that needs a library from
site-packages/nvidia/*/lib; the real wheels run in test_cuda_e2e.py (slow tier)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kmx_tune.errors import UsageError
from kmx_tune.flavors.cuda_libs import (
    PIP,
    SYSTEM,
    WIRING_DIST,
    CudaLibs,
    pip_can_provide,
    plan_cuda_libs,
)
from kmx_tune.flavors.table import LINUX_X86_64, WHEELS, find_wheel
from kmx_tune.install import cuda_wiring
from kmx_tune.install.plan import fit_libraries
from tests.test_elf import build
from tests.test_installer import target_with


def row(name: str, version: str = "1.9.1"):  # noqa: ANN201 -- a table row
    found = find_wheel(name, version, LINUX_X86_64)
    assert found is not None
    return found


# ------------------------------------------------------------------ the choice


@pytest.mark.parametrize("wheel", [w for w in WHEELS if w.cuda and w.needs], ids=lambda w: w.name)
def test_every_soname_a_wheel_needs_is_provided_or_named_for_the_system(wheel) -> None:  # noqa: ANN001
    libs = plan_cuda_libs(wheel, "12.2")
    assert libs is not None
    if libs.mode == PIP:
        provided = {soname for _, soname in libs.preload}
        assert set(wheel.needs) - provided == {"libcuda.so.1"}  # the driver's own
        assert all("==" in p for p in libs.packages)  # pinned
    else:
        assert pip_can_provide(wheel)  # pip only when pip can
        assert all(s in libs.system[0] for s in wheel.needs if s != "libcuda.so.1")
        assert libs.system[1].startswith("Debian/Ubuntu") and "cuda-libraries-" in libs.system[1]
        assert libs.system[2].startswith("conda:") and f"cudatoolkit={wheel.cuda}" in libs.system[2]


def test_pip_where_nvidia_publishes_every_library() -> None:
    cu112 = plan_cuda_libs(row("mxnet-cu112"), "12.2")
    assert cu112 is not None and cu112.mode == PIP
    assert "nvidia-cudnn-cu11==8.9.6.50" in cu112.packages  # ships libcudnn.so.8, not 8.5.0.96
    assert not [p for p in cu112.packages if p.startswith("nvidia-cusparse")]
    cu117 = plan_cuda_libs(row("mxnet-cu117"), "12.2")
    assert cu117 is not None and "nvidia-cusparse-cu11==11.7.5.86" in cu117.packages
    assert cu117.preload[:3] == (
        ("cuda_runtime", "libcudart.so.11.0"),
        ("cublas", "libcublasLt.so.11"),
        ("cublas", "libcublas.so.11"),
    )


def test_cu110_and_cu111_need_an_nvrtc_no_pip_wheel_ships() -> None:
    for name, nvrtc in (("mxnet-cu110", "libnvrtc.so.11.0"), ("mxnet-cu111", "libnvrtc.so.11.1")):
        libs = plan_cuda_libs(row(name), "11.4")
        assert libs is not None and libs.mode == SYSTEM
        assert nvrtc in libs.system[0] and "cuDNN 8" in libs.system[0]
        assert any(nvrtc in r for r in libs.reasons)
        with pytest.raises(ValueError, match=nvrtc):
            plan_cuda_libs(row(name), "11.4", PIP)


def test_system_is_asked_for() -> None:
    libs = plan_cuda_libs(row("mxnet-cu112"), "12.2", SYSTEM)
    assert libs is not None and libs.mode == SYSTEM and libs.packages == ()
    assert "CUDA 11.2 runtime libraries + cuDNN 8 for CUDA 11.2 + NCCL 2" in libs.system[0]


@pytest.mark.parametrize(
    ("driver_cuda", "nvrtc", "fusion"),
    [
        ("12.2", "11.8.89", None),
        ("11.8", "11.8.89", None),
        ("11.7", "11.7.99", None),
        ("11.4", "11.8.89", "0"),
        ("11.2", "11.8.89", "0"),
    ],
)
def test_nvrtc_no_newer_than_the_driver_or_fusion_off(
    driver_cuda: str, nvrtc: str, fusion: str | None
) -> None:
    libs = plan_cuda_libs(row("mxnet-cu112"), driver_cuda)
    assert libs is not None
    assert f"nvidia-cuda-nvrtc-cu11=={nvrtc}" in libs.packages
    assert dict(libs.environment).get("MXNET_USE_FUSION") == fusion
    if fusion:
        assert any(r.startswith("MXNET_USE_FUSION=0: the driver's CUDA") for r in libs.reasons)
        assert libs.wiring_version.endswith(".nofusion")


def test_an_installed_nvidia_wheel_that_serves_stays_and_cuda12_wheels_refuse() -> None:
    libs = plan_cuda_libs(row("mxnet-cu112"), "12.2")
    there = target_with(("nvidia-nccl-cu11", "2.18.3"), ("nvidia-cudnn-cu11", "8.5.0.96"))
    kept, warnings = fit_libraries(there, libs)
    assert kept is not None
    assert "nvidia-nccl-cu11==2.18.3" in kept.packages  # not changed under another package
    assert "nvidia-cudnn-cu11==8.5.0.96" in kept.packages
    assert any("aborts the process on first use" in w for w in warnings)
    nine = target_with(("nvidia-cudnn-cu11", "9.1.0.70"))
    changed, warnings = fit_libraries(nine, libs)
    assert changed is not None and "nvidia-cudnn-cu11==8.9.6.50" in changed.packages
    assert any("ships no libcudnn.so.8" in w for w in warnings)
    with pytest.raises(UsageError, match="nvidia-cudnn-cu12==8.9.7.29"):
        fit_libraries(target_with(("nvidia-cudnn-cu12", "8.9.7.29")), libs)


# ---------------------------------------------------------------- the wiring


def _libs(folder: str, soname: str, **env: str) -> CudaLibs:
    return CudaLibs(
        mode=PIP,
        needs=(soname,),
        packages=(),
        preload=((folder, soname),),
        environment=tuple(env.items()),
        wiring_version="1.0+test",
    )


def test_the_wiring_wheel_is_the_same_bytes_each_time_and_records_every_file(
    tmp_path: Path,
) -> None:
    libs = plan_cuda_libs(row("mxnet-cu117"), "12.2")
    assert libs is not None
    first = cuda_wiring.build(libs, "mxnet-cu117==1.9.1", tmp_path / "a").read_bytes()
    path = cuda_wiring.build(libs, "mxnet-cu117==1.9.1", tmp_path / "b")
    assert path.read_bytes() == first
    assert path.name == "kmx_mxnet_cuda_libs-1.0+cu117-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        record = archive.read("kmx_mxnet_cuda_libs-1.0+cu117.dist-info/RECORD").decode()
        metadata = archive.read("kmx_mxnet_cuda_libs-1.0+cu117.dist-info/METADATA").decode()
        pth = archive.read("kmx_mxnet_cuda_libs.pth").decode()
    assert {line.split(",")[0] for line in record.splitlines()} == names
    assert "Requires-Dist: mxnet-cu117==1.9.1" in metadata
    assert "Requires-Dist: nvidia-cudnn-cu11==8.9.6.50" in metadata
    assert pth == "import kmx_mxnet_cuda_libs; kmx_mxnet_cuda_libs.install()\n"


@pytest.fixture()
def fake_env(tmp_path: Path) -> tuple[Path, Path]:
    """A venv (no pip: kmx-tune's pip drives it) whose site-packages holds a fake
    nvidia/fake/lib/libfakecuda.so.11 and a fake mxnet package whose libmxnet.so needs
    that library and has only RPATH $ORIGIN, like the real ones."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    lib = build(
        site / "nvidia" / "fake" / "lib" / "libfakecuda.so.11",
        "int fake_cuda_answer(void) { return 42; }\n",
        soname="libfakecuda.so.11",
    )
    build(
        site / "mxnet" / "libmxnet.so",
        "int fake_cuda_answer(void);\nint answer(void) { return fake_cuda_answer(); }\n",
        soname="libmxnet.so",
        needs=(lib,),
        rpath="$ORIGIN",
    )
    (site / "mxnet" / "__init__.py").write_text(
        "import ctypes, os\n"
        "_lib = ctypes.CDLL(os.path.join(os.path.dirname(__file__), 'libmxnet.so'))\n"
        "def answer():\n    return _lib.answer()\n"
    )
    return python, site


def _py(python: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    clean.update(env)
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=clean)


def _pip(python: Path, *args: str) -> None:
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run([*pip, *args], check=True, capture_output=True)


def test_import_mxnet_finds_pip_libraries_through_the_wiring_and_nothing_else_changes(
    fake_env: tuple[Path, Path], tmp_path: Path
) -> None:
    python, site = fake_env
    before = sorted(p.name for p in site.iterdir())
    failed = _py(python, "import mxnet")
    assert (
        failed.returncode != 0 and "libfakecuda.so.11: cannot open shared object" in failed.stderr
    )
    wheel = cuda_wiring.build(_libs("fake", "libfakecuda.so.11", MXNET_USE_FUSION="0"), "mxnet==0")
    _pip(python, "install", "--no-deps", "--no-index", str(wheel))

    works = _py(python, "import os, mxnet; print(mxnet.answer(), os.environ['MXNET_USE_FUSION'])")
    assert works.returncode == 0, works.stderr
    assert works.stdout.split() == ["42", "0"]
    # at start-up nothing is loaded: only a finder waits for `import mxnet`
    quiet = _py(
        python,
        "import sys; maps = open('/proc/self/maps').read(); print('libfakecuda' in maps, "
        "'kmx_mxnet_cuda_libs' in sys.modules, 'mxnet' in sys.modules)",
    )
    assert quiet.stdout.split() == ["False", "True", "False"]
    assert "MXNET_USE_FUSION" not in _py(python, "import os; print(dict(os.environ))").stdout
    # the user's own value wins; KMX_MXNET_CUDA_LIBS=0 turns the wiring off
    mine = _py(
        python, "import os, mxnet; print(os.environ['MXNET_USE_FUSION'])", MXNET_USE_FUSION="1"
    )
    assert mine.stdout.strip() == "1"
    off = _py(python, "import mxnet", KMX_MXNET_CUDA_LIBS="0")
    assert off.returncode != 0 and "libfakecuda.so.11" in off.stderr
    assert _py(python, "import mxnet; print(mxnet.answer())", PYTHONNOUSERSITE="1").returncode == 0

    _pip(python, "uninstall", "--yes", WIRING_DIST)
    assert sorted(p.name for p in site.iterdir()) == before
    assert _py(python, "import mxnet").returncode != 0


def test_a_missing_library_is_recorded_and_mxnets_own_error_stays(
    fake_env: tuple[Path, Path],
) -> None:
    python, _ = fake_env
    wheel = cuda_wiring.build(_libs("nothere", "libnothere.so.1"), "mxnet==0")
    _pip(python, "install", "--no-deps", "--no-index", str(wheel))
    run = _py(
        python,
        "import kmx_mxnet_cuda_libs as w\n"
        "try:\n    import mxnet\nexcept OSError as e:\n    print('OSError', e)\n"
        "print(w.ERRORS)",
    )
    assert "OSError" in run.stdout and "libfakecuda.so.11" in run.stdout
    assert "libnothere.so.1: not found under nvidia/*/lib on sys.path" in run.stdout


@pytest.mark.parametrize(
    ("name", "driver_cuda"),
    [("mxnet-cu112", "12.2"), ("mxnet-cu117", "11.4"), ("mxnet-cu114", "11.7")],
)
def test_an_installed_wiring_can_be_built_again_as_its_way_back(
    tmp_path: Path, name: str, driver_cuda: str
) -> None:
    """The wiring is on no index: a rollback that must reinstall it finds the same wheel,
    byte for byte, rebuilt from its version alone."""
    libs = plan_cuda_libs(row(name), driver_cuda)
    assert libs is not None
    first = cuda_wiring.build(libs, f"{name}==1.9.1", tmp_path / "a")
    again = cuda_wiring.rebuild(libs.wiring_version, tmp_path / "b")
    assert again is not None and again.read_bytes() == first.read_bytes()
    assert cuda_wiring.rebuild("1.0+cu999", tmp_path / "c") is None
