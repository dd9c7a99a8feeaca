"""doctor's checks on recorded facts: target interpreters described as the facts
script reports them, hardware profiles from the captures (and synthetic ones), and
real keras.json files in a temporary home folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kmx_tune import keras_config
from kmx_tune.doctor import SCHEMA, Finding, Report, diagnose, diagnose_machine
from kmx_tune.doctor.fix import FixPlan, plan_fixes
from kmx_tune.hardware import HardwareProfile, load_profile
from kmx_tune.interpreters import Interpreter
from kmx_tune.target import RecordedTarget, TargetInfo
from tests.hwfakes import profile_path

KERAS_JSON = Path(__file__).parent / "fixtures" / "keras-json"
PY = "/venv/bin/python"

H100 = "h100-intel-xeon"
NO_GPU = "epyc-no-gpu"
RTX_NEW = "rtx3090-driver-535"
RTX_OLD = "rtx3090-driver-418"


def target(
    *dists: tuple[str, str],
    python: tuple[int, int, int] = (3, 9, 18),
    keras: tuple[str | None, bool] = (None, False),
    deep: Mapping[str, Any] | None = None,
    location: str = "/venv/lib/python3.9/site-packages",
    pip: bool = True,
) -> TargetInfo:
    """A target described the way kmx_env_facts.py reports one."""
    raw = {
        "executable": PY,
        "version": list(python),
        "implementation": "CPython",
        "platform": "linux",
        "machine": "x86_64",
        "prefix": "/venv",
        "base_prefix": "/usr",
        "distributions": {
            name.lower(): {"name": name, "version": version, "location": location}
            for name, version in dists
        },
        "pip_module": pip,
        "keras": {"module_path": keras[0], "has_mxnet_backend": keras[1]},
        "deep": deep,
    }
    return RecordedTarget.from_report(PY, raw).facts()


def hw(name: str, *, from_file: bool = False) -> HardwareProfile:
    """A profile as if probed on that machine, or as read with --hardware FILE."""
    profile = load_profile(profile_path(name))
    return profile if from_file else dataclasses.replace(profile, file=None, source="probed")


# A Python for keras-mxnet, as the finder reports one (kmx_tune.interpreters; the real
# finder runs in tests/test_interpreters.py and in the CLI tests).
PY39 = Interpreter("/opt/pythons/3.9.18/bin/python3.9", (3, 9, 18), "pyenv")
ROUTE = (
    "/opt/pythons/3.9.18/bin/python3.9 -m venv ~/venvs/keras-mxnet && "
    "~/venvs/keras-mxnet/bin/python -m pip install keras-mxnet==2.2.4.3 mxnet==1.9.1 "
    "'numpy<1.24' && kmx-tune doctor --python ~/venvs/keras-mxnet/bin/python"
)


def run(
    t: TargetInfo,
    hardware: str = NO_GPU,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
    from_file: bool = False,
    strict: bool = False,
    keras_python: Interpreter | None = PY39,
) -> Report:
    env = dict(env or {})
    if home is not None:
        env.setdefault("HOME", str(home))
    state = keras_config.read(env=env)
    return diagnose(
        t,
        hw(hardware, from_file=from_file),
        env=env,
        keras_json=state,
        strict=strict,
        keras_python=lambda: keras_python,
    )


def find(report: Report, id_: str) -> Finding:
    matches = [f for f in report.findings if f.id == id_]
    assert matches, f"no finding {id_!r} in {[f.id for f in report.findings]}"
    return matches[0]


MX = ("mxnet", "1.9.1")
NP_OK = ("numpy", "1.23.5")
KERAS_OK = ("/venv/lib/python3.9/site-packages/keras", True)


# ------------------------------------------------------------------ flavor


def test_no_mxnet_fails_with_the_install_command(tmp_path: Path) -> None:
    f = find(run(target(), home=tmp_path), "mxnet")
    assert f.status == "fail" and f.title == "MXNet is not installed"
    assert f.fix == f"kmx-tune install-mxnet --python {PY}"
    assert "recommended: mxnet 1.9.1 because no NVIDIA GPU found (detected: " in f.detail


def test_two_flavors_at_once(tmp_path: Path) -> None:
    f = find(run(target(MX, ("mxnet-cu117", "1.9.1"), NP_OK), home=tmp_path), "mxnet")
    assert f.status == "fail"
    assert "2 MXNet flavors are installed at once: mxnet 1.9.1, mxnet-cu117 1.9.1" in f.title
    assert f.fix == (
        f"{PY} -m pip uninstall -y mxnet mxnet-cu117 && kmx-tune install-mxnet --python {PY}"
    )


def test_cpu_build_on_a_gpu_box(tmp_path: Path) -> None:
    file = str(profile_path(RTX_NEW))
    f = find(run(target(MX, NP_OK), RTX_NEW, home=tmp_path, from_file=True), "mxnet")
    assert f.status == "warn" and "CPU build" in f.title
    assert "recommended: mxnet-cu117 1.9.1" in f.detail
    assert "driver 535.104.05 (CUDA 12.2), compute capability 8.6" in f.detail
    # the fix keeps giving the install command the same hardware facts
    assert f.fix == f"kmx-tune install-mxnet --python {PY} --hardware {file}"


def test_cuda_flavor_newer_than_the_driver(tmp_path: Path) -> None:
    f = find(run(target(("mxnet-cu117", "1.9.1"), NP_OK), RTX_OLD, home=tmp_path), "mxnet")
    assert f.status == "fail"
    assert "needs CUDA 11.7, newer than the driver supports" in f.title
    assert (
        "driver 418.39 supports CUDA 10.1; CUDA 11.7 needs driver 515.43.04 or newer "
        "(450.80.02 through CUDA 11 minor-version compatibility)"
    ) in f.detail


def test_cuda_flavor_without_kernels_for_the_h100(tmp_path: Path) -> None:
    f = find(run(target(("mxnet-cu117", "1.9.1"), NP_OK), H100, home=tmp_path), "mxnet")
    assert f.status == "fail"
    assert f.title == "mxnet-cu117 1.9.1 has no kernels for NVIDIA H100 80GB HBM3 (9.0)"
    assert "no kernel image is available for execution on the device" in f.detail
    assert 'MXNET_CUDA_ARCH="9.0"' in f.detail  # the build-from-source route
    assert f.fix == f"kmx-tune install-mxnet --python {PY}"


def test_cuda_flavor_on_a_box_without_gpu(tmp_path: Path) -> None:
    f = find(run(target(("mxnet-cu102", "1.9.1"), NP_OK), NO_GPU, home=tmp_path), "mxnet")
    assert f.status == "fail" and "no NVIDIA GPU" in f.title
    assert "libnvidia-ml.so.1 not found" in f.detail


def test_the_right_cuda_flavor_is_ok(tmp_path: Path) -> None:
    f = find(run(target(("mxnet-cu117", "1.9.1"), NP_OK), RTX_NEW, home=tmp_path), "mxnet")
    assert f.status == "ok" and f.fix is None
    assert "compute capability 8.6" in f.detail


def test_an_old_cpu_flavor_is_a_warning(tmp_path: Path) -> None:
    f = find(run(target(("mxnet-mkl", "1.6.0"), NP_OK), home=tmp_path), "mxnet")
    assert f.status == "warn" and "older than mxnet 1.9.1" in f.title


def test_h100_with_cpu_mxnet_is_ok_and_shows_the_source_route(tmp_path: Path) -> None:
    f = find(run(target(MX, NP_OK), H100, home=tmp_path), "mxnet")
    assert f.status == "ok"
    assert "no MXNet wheel has machine code (SASS) for compute capability 9.0" in f.detail
    assert "git clone --recursive" in f.detail


# ------------------------------------------------------------------- numpy


def test_numpy_124_fails_with_the_exact_fix(tmp_path: Path) -> None:
    report = run(target(MX, ("numpy", "1.24.4")), home=tmp_path)
    f = find(report, "numpy")
    assert f.status == "fail"
    assert "numpy 1.24.4 breaks mxnet 1.9.1" in f.title
    assert "module 'numpy' has no attribute 'bool'" in f.detail
    assert f.fix == f"{PY} -m pip install 'numpy<1.24'"
    assert report.exit_code == 1


def test_numpy_2_fails_too(tmp_path: Path) -> None:
    f = find(run(target(MX, ("numpy", "2.4.6")), home=tmp_path), "numpy")
    assert f.status == "fail"
    # mxnet's own requirement (numpy<2.0.0) does not allow 2.x: another package pulled it in
    assert "lets pip install it" not in f.detail
    assert "numpy<2.0.0" in f.detail and "another package" in f.detail


def test_on_python_312_the_fixes_move_to_an_older_python(tmp_path: Path) -> None:
    """numpy<1.24 has no wheel for Python 3.12+, so install-mxnet and `pip install
    'numpy<1.24'` would fail there: the fix is a venv with an older Python."""
    report = run(target(python=(3, 12, 1)), home=tmp_path)
    f = find(report, "mxnet")
    assert f.status == "fail" and "Python 3.12" in f.title
    assert f.fix == ROUTE
    numpy = find(run(target(MX, ("numpy", "1.26.4"), python=(3, 12, 1)), home=tmp_path), "numpy")
    assert numpy.fix == ROUTE
    assert "no wheel for Python 3.12" in numpy.detail


def test_numpy_missing(tmp_path: Path) -> None:
    f = find(run(target(MX), home=tmp_path), "numpy")
    assert f.status == "fail" and f.fix == f"{PY} -m pip install 'numpy<1.24'"


def test_numpy_1235_is_ok(tmp_path: Path) -> None:
    assert find(run(target(MX, NP_OK), home=tmp_path), "numpy").status == "ok"


# ------------------------------------------------------------------- keras


def test_keras_mxnet_on_python_39_is_ok(tmp_path: Path) -> None:
    t = target(MX, NP_OK, ("keras-mxnet", "2.2.4.3"), keras=KERAS_OK)
    f = find(run(t, home=tmp_path), "keras")
    assert f.status == "ok" and "mxnet_backend.py" in f.detail


def test_keras_mxnet_fails_on_python_310_and_later(tmp_path: Path) -> None:
    t = target(MX, NP_OK, ("keras-mxnet", "2.2.4.3"), keras=KERAS_OK, python=(3, 11, 7))
    f = find(run(t, home=tmp_path), "keras.python")
    assert f.status == "fail"
    assert f.title == "keras-mxnet 2.2.4.3 fails to import on Python 3.11"
    assert "from collections import Iterable" in f.detail
    assert "found Python 3.9.18 at /opt/pythons/3.9.18/bin/python3.9 (pyenv)" in f.detail
    assert f.fix == ROUTE


def test_plain_keras_installed_over_keras_mxnet(tmp_path: Path) -> None:
    t = target(
        MX,
        NP_OK,
        ("keras-mxnet", "2.2.4.3"),
        ("keras", "2.15.0"),
        keras=("/venv/lib/python3.9/site-packages/keras", False),
    )
    f = find(run(t, home=tmp_path), "keras")
    assert f.status == "fail"
    assert f.title == (
        "`import keras` finds keras 2.15.0 installed over keras-mxnet, which has no MXNet backend"
    )
    assert f.fix == (
        f"{PY} -m pip uninstall -y keras && "
        f"{PY} -m pip install --force-reinstall --no-deps keras-mxnet==2.2.4.3"
    )


def test_both_keras_distributions_warn(tmp_path: Path) -> None:
    t = target(MX, NP_OK, ("keras-mxnet", "2.2.4.3"), ("keras", "2.2.4"), keras=KERAS_OK)
    assert find(run(t, home=tmp_path), "keras").status == "warn"


def test_keras_not_installed_warns(tmp_path: Path) -> None:
    f = find(run(target(MX, NP_OK), home=tmp_path), "keras")
    assert f.status == "warn" and f.fix == f"{PY} -m pip install keras-mxnet==2.2.4.3"


# -------------------------------------------------------------- keras.json


def _home_with(tmp_path: Path, fixture: str | None, text: str | None = None) -> Path:
    home = tmp_path / "home"
    (home / ".keras").mkdir(parents=True, exist_ok=True)
    if fixture:
        shutil.copy(KERAS_JSON / fixture, home / ".keras" / "keras.json")
    if text is not None:
        (home / ".keras" / "keras.json").write_text(text)
    return home


def test_a_keras_json_folder_gets_a_fix_that_works(tmp_path: Path) -> None:
    """set-format --force refuses a folder, so the fix moves it away first."""
    home = _home_with(tmp_path, None)
    folder = home / ".keras" / "keras.json"
    folder.mkdir()
    f = find(run(target(MX, NP_OK), home=home), "keras.json")
    assert f.status == "fail"
    assert f.fix == f"mv {folder} {folder}.bak && kmx-tune set-format channels_first"


def test_missing_keras_json_warns_with_set_format(tmp_path: Path) -> None:
    report = run(target(MX, NP_OK), home=tmp_path)
    f = find(report, "keras.json")
    assert f.status == "warn" and f.fix == "kmx-tune set-format channels_first"
    assert str(tmp_path / ".keras" / "keras.json") in f.detail
    # one warning, not two: the missing file's warning says it will be channels_last
    assert not [x for x in report.findings if x.id == "keras.image_data_format"]


def test_keras_mxnet_first_import_file(tmp_path: Path) -> None:
    home = _home_with(tmp_path, "keras-mxnet-2.2.4.3-first-import.json")
    report = run(target(MX, NP_OK), home=home)
    assert find(report, "keras.json").status == "ok"
    assert find(report, "keras.backend").status == "ok"
    f = find(report, "keras.image_data_format")
    assert f.status == "warn" and "channels_last" in f.title
    assert f.fix == "kmx-tune set-format channels_first"
    assert "from keras.json" in f.detail


def test_tensorflow_backend_in_keras_json_fails(tmp_path: Path) -> None:
    home = _home_with(tmp_path, "keras-3.15.1-first-import.json")
    f = find(run(target(MX, NP_OK), home=home), "keras.backend")
    assert f.status == "fail" and "tensorflow" in f.title
    assert f.fix == "kmx-tune set-format channels_first"


def test_keras_backend_env_overrides_the_file(tmp_path: Path) -> None:
    home = _home_with(tmp_path, "keras-mxnet-2.2.4.3-first-import.json")
    report = run(target(MX, NP_OK), home=home, env={"KERAS_BACKEND": "tensorflow"})
    f = find(report, "keras.backend")
    assert f.status == "fail" and f.fix == "unset KERAS_BACKEND"
    assert "KERAS_BACKEND=tensorflow" in f.detail


def test_channels_first_mxnet_is_ok(tmp_path: Path) -> None:
    text = json.dumps({"backend": "mxnet", "image_data_format": "channels_first"})
    report = run(target(MX, NP_OK), home=_home_with(tmp_path, None, text))
    assert find(report, "keras.image_data_format").status == "ok"
    assert find(report, "keras.backend").status == "ok"


def test_malformed_keras_json_fails(tmp_path: Path) -> None:
    report = run(target(MX, NP_OK), home=_home_with(tmp_path, None, "{backend: mxnet"))
    f = find(report, "keras.json")
    assert f.status == "fail" and f.fix == "kmx-tune set-format channels_first --force"
    assert not [x for x in report.findings if x.id == "keras.image_data_format"]


def test_keras_home_is_where_doctor_looks(tmp_path: Path) -> None:
    folder = tmp_path / "kh"
    folder.mkdir()
    (folder / "keras.json").write_text(json.dumps({"image_data_format": "channels_first"}))
    report = run(target(MX, NP_OK), home=tmp_path, env={"KERAS_HOME": str(folder)})
    assert report.keras_json == str(folder / "keras.json")
    assert find(report, "keras.image_data_format").status == "ok"


# ----------------------------------------------------------- tuning vars


def test_omp_threads_unset_uses_physical_cores_of_the_profile(tmp_path: Path) -> None:
    f = find(run(target(MX, NP_OK), H100, home=tmp_path, from_file=True), "env.OMP_NUM_THREADS")
    assert f.status == "warn" and f.fix == "export OMP_NUM_THREADS=16"
    assert "16 physical cores" in f.detail and "profile " in f.detail
    # what unset means: MXNet halves the CPUs on x86 (src/engine/openmp.cc)
    assert "unset, MXNet runs 8 OpenMP thread(s)" in f.detail


@pytest.mark.parametrize(
    ("value", "status"), [("16", "ok"), ("8", "ok"), ("64", "warn"), ("lots", "warn")]
)
def test_omp_threads_values(tmp_path: Path, value: str, status: str) -> None:
    env = {"OMP_NUM_THREADS": value}
    f = find(run(target(MX, NP_OK), H100, env=env, home=tmp_path), "env.OMP_NUM_THREADS")
    assert f.status == status
    if status == "warn":
        assert f.fix == "export OMP_NUM_THREADS=16"


def _mxnet_folder(tmp_path: Path, *libs: str) -> str:
    site = tmp_path / "site-packages"
    (site / "mxnet").mkdir(parents=True)
    for lib in ("libmxnet.so", *libs):
        (site / "mxnet" / lib).write_bytes(b"")
    return str(site)


def test_kmp_affinity_for_an_intel_openmp_build(tmp_path: Path) -> None:
    site = _mxnet_folder(tmp_path, "libiomp5.so")
    t = target(("mxnet-mkl", "1.6.0"), NP_OK, location=site)
    f = find(run(t, home=tmp_path), "env.KMP_AFFINITY")
    assert f.status == "warn"
    assert f.fix == "export KMP_AFFINITY=granularity=fine,compact,1,0"
    assert "libiomp5.so" in f.detail
    ok = run(t, home=tmp_path, env={"KMP_AFFINITY": "granularity=fine,compact,1,0"})
    assert find(ok, "env.KMP_AFFINITY").status == "ok"


def test_kmp_affinity_not_needed_with_gnu_openmp(tmp_path: Path) -> None:
    t = target(MX, NP_OK, location=_mxnet_folder(tmp_path))
    f = find(run(t, home=tmp_path), "env.KMP_AFFINITY")
    assert f.status == "ok" and "GNU OpenMP" in f.title


def test_cudnn_autotune_only_on_gpu_boxes(tmp_path: Path) -> None:
    t = target(("mxnet-cu117", "1.9.1"), NP_OK)
    assert not [
        f for f in run(t, NO_GPU, home=tmp_path).findings if f.id.startswith("env.MXNET_CUDNN")
    ]
    assert find(run(t, RTX_NEW, home=tmp_path), "env.MXNET_CUDNN_AUTOTUNE_DEFAULT").status == "ok"
    off = run(t, RTX_NEW, home=tmp_path, env={"MXNET_CUDNN_AUTOTUNE_DEFAULT": "0"})
    f = find(off, "env.MXNET_CUDNN_AUTOTUNE_DEFAULT")
    assert f.status == "warn" and f.fix == "export MXNET_CUDNN_AUTOTUNE_DEFAULT=1"


def test_cudnn_autotune_is_not_advice_for_a_cpu_build_on_a_gpu_box(tmp_path: Path) -> None:
    """On the H100 no wheel has kernels: the advice is the CPU build, which has no cuDNN."""
    t = target(MX, NP_OK)
    unset = run(t, H100, home=tmp_path)
    assert not [f for f in unset.findings if f.id.startswith("env.MXNET_CUDNN")]
    off = run(t, H100, home=tmp_path, env={"MXNET_CUDNN_AUTOTUNE_DEFAULT": "0"})
    f = find(off, "env.MXNET_CUDNN_AUTOTUNE_DEFAULT")
    assert f.status == "ok" and f.fix is None
    assert f.title == "MXNET_CUDNN_AUTOTUNE_DEFAULT=0 has no effect on mxnet 1.9.1, a CPU build"
    # nothing installed: the advice (the CPU build on an H100) decides
    assert not [
        f for f in run(target(), H100, home=tmp_path).findings if f.id.startswith("env.MXNET_CUDNN")
    ]
    # a CUDA flavor installed on a GPU it fits is still checked
    assert (
        find(
            run(target(("mxnet-cu117", "1.9.1"), NP_OK), RTX_NEW, home=tmp_path),
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
        ).status
        == "ok"
    )


def test_mxnet_library_path_is_flagged_whether_it_loads_or_is_ignored(tmp_path: Path) -> None:
    t = target(MX, NP_OK)
    assert not [f for f in run(t, home=tmp_path).findings if f.id == "env.MXNET_LIBRARY_PATH"]
    lib = tmp_path / "libmxnet.so"
    lib.write_bytes(b"\x7fELF")
    loaded = find(
        run(t, home=tmp_path, env={"MXNET_LIBRARY_PATH": str(lib)}), "env.MXNET_LIBRARY_PATH"
    )
    assert loaded.status == "warn" and loaded.fix == "unset MXNET_LIBRARY_PATH"
    assert "loads this library" in loaded.title
    missing = find(
        run(t, home=tmp_path, env={"MXNET_LIBRARY_PATH": str(tmp_path / "gone.so")}),
        "env.MXNET_LIBRARY_PATH",
    )
    assert missing.status == "warn" and "is not a file" in missing.title


# ------------------------------------------------------------ report, deep


def _healthy(tmp_path: Path) -> Report:
    text = json.dumps({"backend": "mxnet", "image_data_format": "channels_first"})
    home = _home_with(tmp_path, None, text)
    t = target(MX, NP_OK, ("keras-mxnet", "2.2.4.3"), keras=KERAS_OK)
    return run(t, home=home, env={"OMP_NUM_THREADS": "2"})


def test_a_healthy_setup_has_no_problems(tmp_path: Path) -> None:
    report = _healthy(tmp_path)
    assert [f.id for f in report.findings if f.status != "ok"] == []
    assert report.exit_code == 0 and dataclasses.replace(report, strict=True).exit_code == 0


def test_exit_codes_from_the_findings(tmp_path: Path) -> None:
    warned = run(target(MX, NP_OK), home=tmp_path)  # keras missing etc.: warnings only
    assert warned.count("warn") and not warned.count("fail")
    assert warned.exit_code == 0
    assert dataclasses.replace(warned, strict=True).exit_code == 1
    assert run(target(), home=tmp_path).exit_code == 1


def test_every_problem_has_a_fix_and_a_source(tmp_path: Path) -> None:
    for t in (target(), target(MX, ("numpy", "1.24.4")), target(("mxnet-cu117", "1.9.1"))):
        for f in run(t, H100, home=tmp_path).findings:
            assert f.detail, f
            if f.status != "ok":
                assert f.fix, f


def test_json_report(tmp_path: Path) -> None:
    report = run(target(MX, ("numpy", "1.24.4")), home=tmp_path, strict=True)
    data = report.to_json()
    assert data["schema"] == SCHEMA == "kmx-tune/doctor/1"
    assert data["exit_code"] == 1 and data["strict"] is True
    numpy = next(f for f in data["findings"] if f["id"] == "numpy")
    assert numpy["status"] == "fail" and numpy["fix"] == f"{PY} -m pip install 'numpy<1.24'"
    assert data["summary"]["fail"] == report.count("fail")
    assert data["recommendation"]["package"] == "mxnet"
    json.dumps(data)  # serializable as it is


def test_deep_import_error_from_numpy(tmp_path: Path) -> None:
    deep = {
        "mxnet_version": None,
        "mxnet_import_error": "AttributeError: module 'numpy' has no attribute 'bool'.",
        "features": None,
        "num_gpus": None,
        "keras_version": None,
        "keras_import_error": None,
    }
    report = run(target(MX, ("numpy", "1.24.4"), deep=deep), home=tmp_path)
    assert report.deep
    f = find(report, "mxnet.import")
    assert f.status == "fail" and f.fix == f"{PY} -m pip install 'numpy<1.24'"


def test_deep_features_and_gpus(tmp_path: Path) -> None:
    deep = {
        "mxnet_version": "1.9.1",
        "mxnet_import_error": None,
        "features": {"CUDA": True, "CUDNN": True, "MKLDNN": True},
        "num_gpus": 0,
        "keras_version": "2.2.4",
        "keras_import_error": None,
    }
    t = target(("mxnet-cu117", "1.9.1"), NP_OK, deep=deep, keras=KERAS_OK)
    report = run(t, RTX_NEW, home=tmp_path)
    assert find(report, "mxnet.import").status == "fail"  # a CUDA build that sees no GPU
    assert find(report, "keras.import").status == "ok"


def test_deep_keras_failure_with_plain_keras_installed_has_the_same_fix(tmp_path: Path) -> None:
    """Reinstalling keras-mxnet while plain keras stays leaves the next upgrade to break
    it again: the --deep finding's fix removes plain keras too, like the static one."""
    deep = {
        "mxnet_version": "1.9.1",
        "mxnet_import_error": None,
        "features": {"MKLDNN": True},
        "num_gpus": 0,
        "keras_version": None,
        "keras_import_error": "ValueError: Invalid backend. Missing required entry : placeholder",
    }
    t = target(
        MX, NP_OK, ("keras", "2.2.4"), ("keras-mxnet", "2.2.4.3"), deep=deep,
        keras=("/venv/lib/python3.9/site-packages/keras", False),
    )  # fmt: skip
    report = run(t, home=tmp_path)
    assert find(report, "keras.import").fix == find(report, "keras").fix
    assert f"{PY} -m pip uninstall -y keras" in (find(report, "keras.import").fix or "")


# ------------------------------------------ the venv route, old pip, no environment (issue 15)


def test_the_venv_route_names_the_python_found_not_a_guessed_command(tmp_path: Path) -> None:
    """Issue 15 item 6: the fix hard-coded `python3.9 -m venv`, which is not on PATH on a
    pyenv machine ("pyenv: python3.9: command not found")."""
    py38 = Interpreter("/home/me/.pyenv/versions/3.8.18/bin/python3.8", (3, 8, 18), "pyenv")
    t = target(MX, NP_OK, ("keras-mxnet", "2.2.4.3"), keras=KERAS_OK, python=(3, 11, 7))
    f = find(run(t, home=tmp_path, keras_python=py38), "keras.python")
    assert f.fix is not None
    assert f.fix.startswith("/home/me/.pyenv/versions/3.8.18/bin/python3.8 -m venv ")
    assert "python3.9 -m venv" not in f.fix


@pytest.mark.parametrize(
    ("tool", "start"),
    [
        ("uv", "uv venv --seed --python 3.9 ~/venvs/keras-mxnet && "),
        ("pyenv", "pyenv install 3.9 && PYENV_VERSION=3.9 pyenv exec python -m venv "),
        ("conda", "conda create -y -p ~/venvs/keras-mxnet python=3.9 pip && "),
    ],
)
def test_without_a_python_for_keras_the_route_gets_one_first(
    tmp_path: Path, tool: str, start: str
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / tool).write_text("#!/bin/sh\n")
    (bin_dir / tool).chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    t = target(python=(3, 11, 7))
    f = find(run(t, env=env, keras_python=None), "python")
    assert f.fix is not None and f.fix.startswith(start)
    assert f.fix.endswith("kmx-tune doctor --python ~/venvs/keras-mxnet/bin/python")


def test_with_no_python_and_no_tool_it_says_what_to_install(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    f = find(run(target(python=(3, 11, 7)), env=env, keras_python=None), "python")
    assert "no Python 3.6-3.9 that can make a venv found on PATH, in pyenv, uv or conda" in (
        f.detail
    )
    assert f.fix is not None and f.fix.startswith("install Python 3.9 (with uv: ")


def test_python_311_with_nothing_installed_gets_one_route_not_install_mxnet_here(
    tmp_path: Path,
) -> None:
    """Issue 15 item 1: "install mxnet here" next to "make a separate <=3.9 venv"."""
    report = run(target(python=(3, 11, 7)), home=tmp_path)
    python, mxnet, keras = (find(report, i) for i in ("python", "mxnet", "keras"))
    assert python.status == "warn" and "cannot run keras-mxnet 2.2.4.3" in python.title
    assert python.fix == mxnet.fix == keras.fix == ROUTE
    assert "install-mxnet" not in (mxnet.fix or "")


def test_python_311_with_mxnet_already_keeps_the_in_place_fixes(tmp_path: Path) -> None:
    """Someone who put MXNet in a 3.11 env (Gluon, say) still gets fixes for that env."""
    report = run(target(MX, ("numpy", "1.24.4"), python=(3, 11, 7)), home=tmp_path)
    assert find(report, "python").status == "ok"
    assert find(report, "numpy").fix == f"{PY} -m pip install 'numpy<1.24'"


@pytest.mark.parametrize(
    ("python", "pip", "fix"),
    [
        ((3, 6, 15), "18.1", f"{PY} -m pip install --upgrade 'pip<22'"),
        ((3, 7, 16), "19.0.3", f"{PY} -m pip install --upgrade 'pip<24.1'"),
        ((3, 8, 18), "19.2", f"{PY} -m pip install --upgrade 'pip<25.1'"),
        ((3, 9, 18), "9.0.1", f"{PY} -m pip install --upgrade pip"),
    ],
)
def test_a_pip_too_old_for_mxnet_wheels_is_flagged_with_the_upgrade_that_works(
    tmp_path: Path, python: tuple[int, int, int], pip: str, fix: str
) -> None:
    """Issue 15 item 6: on Python 3.6 with pip 18.1 doctor said "✓ python", and
    install-mxnet then refused the old pip; a plain `--upgrade pip` failed there."""
    f = find(run(target(("pip", pip), python=python), home=tmp_path), "python")
    assert f.status == "warn" and f"pip {pip} cannot install MXNet" in f.title
    assert "manylinux2014" in f.title and "19.3" in f.detail
    assert f.fix == fix


def test_a_new_enough_pip_is_ok(tmp_path: Path) -> None:
    f = find(run(target(("pip", "21.3.1"), python=(3, 6, 15)), home=tmp_path), "python")
    assert f.status == "ok" and f.title == "Python 3.6 with pip 21.3.1"


def test_with_no_environment_it_says_how_to_make_one(tmp_path: Path) -> None:
    report = diagnose_machine(
        hw(NO_GPU),
        ("VIRTUAL_ENV=/k/.venv is kmx-tune's own environment (no Keras or MXNet in it)",),
        env={"HOME": str(tmp_path)},
        keras_python=lambda: PY39,
        keras_environments=lambda: [],
    )
    assert report.target is None and report.exit_code == 0
    env_finding = find(report, "environment")
    assert env_finding.status == "warn"
    assert "looked at: VIRTUAL_ENV=/k/.venv is kmx-tune's own" in env_finding.detail
    assert env_finding.fix == ROUTE
    # the checks of the machine still run: keras.json and the thread count
    assert {f.id for f in report.findings} >= {"keras.json", "env.OMP_NUM_THREADS"}
    assert "mxnet" not in {f.id for f in report.findings}
    data = report.to_json()
    assert data["python"] is None and data["target"] is None
    assert data["passed_over"] == list(report.passed_over)


def test_with_no_environment_chosen_it_points_at_one_with_keras_mxnet(tmp_path: Path) -> None:
    found = ["/home/me/venvs/kvenv/bin/python", "/home/me/.pyenv/versions/km/bin/python"]
    report = diagnose_machine(
        hw(NO_GPU),
        (),
        env={"HOME": str(tmp_path)},
        keras_python=lambda: PY39,
        keras_environments=lambda: found,
    )
    f = find(report, "environment")
    assert f.fix == "kmx-tune doctor --python /home/me/venvs/kvenv/bin/python"
    assert "found keras-mxnet in /home/me/venvs/kvenv/bin/python, /home/me/.pyenv" in f.detail


# ------------------------------------------------------------ doctor --fix: the plan


def _plan(report: Report, tmp_path: Path) -> FixPlan:
    return plan_fixes(report, tmp_path / "env.sh")


def test_fix_plan_removes_a_second_flavor_through_install_mxnet_alone(tmp_path: Path) -> None:
    """`pip uninstall -y A B && kmx-tune install-mxnet`: install-mxnet removes every other
    flavor itself, with a way back; an uninstall run before it would have none."""
    report = run(target(MX, ("mxnet-cu117", "1.9.1"), ("numpy", "1.24.4")), home=tmp_path)
    plan = _plan(report, tmp_path)
    kinds = [a.kind for a in plan.actions]
    assert kinds.count("install-mxnet") == 1 and "numpy" not in kinds  # it pins numpy too
    assert not any("uninstall" in a.command for a in plan.actions)
    install = next(a for a in plan.actions if a.kind == "install-mxnet")
    assert install.command == f"kmx-tune install-mxnet --python {PY}"
    assert "mxnet" in install.findings


def test_fix_plan_order_and_what_is_left_to_the_user(tmp_path: Path) -> None:
    t = target(
        ("pip", "18.1"),
        MX,
        ("numpy", "1.24.4"),
        ("keras-mxnet", "2.2.4.3"),
        ("keras", "2.2.4"),
        keras=KERAS_OK,
        python=(3, 6, 15),
    )
    env = {"MXNET_SUBGRAPH_BACKEND": "NONE"}
    report = run(t, env=env, home=_home_with(tmp_path, None, "{bad json"))
    plan = _plan(report, tmp_path)
    # pip itself first, keras-mxnet's fix before the numpy pin, the variables last
    assert [a.kind for a in plan.actions] == ["pip-itself", "pip", "pip", "numpy", "env", "env"]
    assert plan.actions[0].command == f"{PY} -m pip install --upgrade 'pip<22'"
    assert plan.actions[1].command == f"{PY} -m pip uninstall -y keras"
    assert [a.args for a in plan.env_actions] == [
        ("export", "OMP_NUM_THREADS", "2"),
        ("unset", "MXNET_SUBGRAPH_BACKEND"),
    ]
    skipped = {s.finding: s.why for s in plan.skipped}
    assert skipped["keras.json"].startswith("replaces keras.json content")


def test_fix_plan_never_applies_the_venv_route(tmp_path: Path) -> None:
    report = run(target(python=(3, 11, 7)), home=tmp_path)
    plan = _plan(report, tmp_path)
    assert not any(a.kind == "install-mxnet" for a in plan.actions)
    assert {s.why for s in plan.skipped} == {"makes a new environment: run it yourself"}
    assert {s.finding for s in plan.skipped} == {"python", "mxnet", "keras"}


def test_fix_plan_keeps_install_mxnet_options_it_knows_and_leaves_others(tmp_path: Path) -> None:
    from kmx_tune.doctor.fix import _parse

    known = _parse(
        ["kmx-tune", "install-mxnet", "--python", PY, "--flavor", "mxnet-cu112", "--version",
         "1.9.1", "--cuda-libs", "pip", "--cpu"],
        PY,
    )  # fmt: skip
    assert not isinstance(known, str) and known.kind == "install-mxnet"
    assert known.args == ("--flavor", "mxnet-cu112", "--version", "1.9.1", "--cuda-libs", "pip",
                          "--cpu")  # fmt: skip
    unknown = _parse(["kmx-tune", "install-mxnet", "--python", PY, "--frobnicate"], PY)
    assert isinstance(unknown, str)
    other = _parse(["kmx-tune", "install-mxnet", "--python", "/other/python"], PY)
    assert isinstance(other, str)  # a fix for another interpreter is not this target's
