"""`kmx-tune probe` and `kmx-tune doctor` through the CLI (CliRunner), and, in real
venvs, doctor on a healthy MXNet and on one broken by numpy 1.24."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from kmx_tune.hardware import load_profile
from tests.cli import kmx
from tests.hwfakes import profile_path
from tests.venvs import make_venv, pip_install

H100 = str(profile_path("h100-intel-xeon"))
NO_GPU = str(profile_path("epyc-no-gpu"))
ANSI_COLOUR = "\x1b[3"  # SGR 30-39: a foreground colour


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return kmx(*args, env=env)


# ------------------------------------------------------------------ probe


def test_probe_shows_the_h100_and_the_advice() -> None:
    result = invoke("probe", "--hardware", H100)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "driver 580.159.04, supports CUDA 13.0" in out
    assert "NVIDIA H100 80GB HBM3, compute capability 9.0, 81559 MiB" in out
    assert "avx512f" in out and "amx_tile" in out
    assert "MXNet for this box (any Python): mxnet 1.9.1 (CPU)" in out
    assert "no MXNet wheel has machine code (SASS) for compute capability 9.0" in out
    assert "no MXNet wheel has kernels" not in out  # PTX exists in the <= 1.7.0 wheels
    assert "mxnet-cu102mkl 1.6.0.post0 (and other wheels up to 1.7.0) carries PTX" in out
    assert 'MXNET_CUDA_ARCH="9.0"' in out


def test_probe_on_this_machine_says_no_gpu_and_why() -> None:
    result = invoke("probe")
    assert result.exit_code == 0
    assert "no NVIDIA GPU found: " in result.output


def test_probe_json_is_a_profile_other_commands_read(tmp_path: Path) -> None:
    result = invoke("probe", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["schema"] == "kmx-tune/hardware/1"
    assert data["nvidia"] is None and data["gpus"] == []
    saved = tmp_path / "box.json"
    saved.write_text(result.output)
    assert load_profile(saved).cpu.flags == tuple(data["cpu"]["flags"])
    again = invoke("probe", "--hardware", str(saved), "--json")
    assert json.loads(again.output) == data


def test_probe_bad_profile_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "box.json"
    bad.write_text("{}")
    result = kmx("probe", "--hardware", str(bad))
    assert result.exit_code == 2
    assert result.output.startswith("Error: --hardware ")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["probe", "doctor"])
def test_help_has_an_example(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"kmx-tune {command}" in result.output


# ----------------------------------------------------------------- doctor


def test_doctor_text_report_with_fixes_under_problems() -> None:
    result = invoke("doctor", "--python", sys.executable, "--hardware", H100)
    out = result.output
    assert f"kmx-tune doctor: {sys.executable}" in out
    assert "recommended MXNet: mxnet==1.9.1 numpy<1.24" in out
    lines = out.splitlines()
    i = next(
        n for n, line in enumerate(lines) if line.startswith("✗ mxnet: MXNet is not installed")
    )
    if sys.version_info >= (3, 10):
        # kmx-tune's own Python cannot run keras-mxnet and has none of it: one route, a
        # venv with an older Python, first under python and then referred to
        assert "! python: Python 3." in out and "cannot run keras-mxnet 2.2.4.3" in out
        assert "    fix: the same as for python above" in lines[i + 1 : i + 4]
    else:
        assert any(
            line.strip()
            == f"fix: kmx-tune install-mxnet --python {sys.executable} --hardware {H100}"
            for line in lines[i + 1 : i + 4]
        )
    assert "! env.OMP_NUM_THREADS: OMP_NUM_THREADS is not set" in out
    assert "fix: export OMP_NUM_THREADS=16" in out
    assert result.exit_code == 1
    assert ANSI_COLOUR not in out  # not a terminal: no colour


def test_doctor_json_has_the_same_findings() -> None:
    args = ["doctor", "--python", sys.executable, "--hardware", NO_GPU]
    text = invoke(*args).output
    result = invoke(*args, "--json")
    data = json.loads(result.output)
    assert data["schema"] == "kmx-tune/doctor/1"
    assert result.exit_code == data["exit_code"] == 1
    for finding in data["findings"]:
        assert f"{finding['id']}: {finding['title']}" in text
        if finding["fix"]:
            assert f"fix: {finding['fix']}" in text


def test_doctor_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = kmx("doctor", "--python", str(tmp_path / "nope" / "python"))
    assert missing.exit_code == 2 and missing.output.startswith("Error: --python ")
    bad_hw = kmx("doctor", "--hardware", str(tmp_path / "none.json"))
    assert bad_hw.exit_code == 2 and "no such file" in bad_hw.output
    unknown = kmx("doctor", "--frobnicate")
    assert unknown.exit_code == 2


def test_colour_on_a_terminal_and_no_color_honoured() -> None:
    args = ["doctor", "--python", sys.executable, "--hardware", NO_GPU]
    forced = invoke(*args, env={"FORCE_COLOR": "1", "NO_COLOR": ""}).output
    assert ANSI_COLOUR in forced  # rich colours when it believes it is on a terminal
    plain = invoke(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).output
    assert ANSI_COLOUR not in plain


# ------------------------------------------------- speed: no heavy imports

_IMPORTS = """
import sys
from kmx_tune.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="kmx-tune", standalone_mode=False)
except SystemExit:
    pass
sys.__stdout__.write("\\nHEAVY=" + ",".join(
    m for m in ("numpy", "mxnet", "cpuinfo", "rich", "pynvml") if m in sys.modules) + "\\n")
"""


def _heavy(*args: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *args], capture_output=True, text=True, env=os.environ
    ).stdout
    line = [x for x in out.splitlines() if x.startswith("HEAVY=")][-1]
    return set(filter(None, line[6:].split(",")))


def test_help_imports_nothing_heavy() -> None:
    assert _heavy("--help") == set()


def test_doctor_imports_neither_numpy_nor_mxnet() -> None:
    _heavy("probe")  # fills the CPU cache (this test's XDG_CACHE_HOME)
    heavy = _heavy("doctor", "--python", sys.executable)
    assert not heavy & {"numpy", "mxnet", "cpuinfo"}
    # no libnvidia-ml on this machine: pynvml is not even imported
    assert "pynvml" not in heavy


# ------------------------------------------------------------ integration


def _doctor_json(python: Path, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
    result = invoke("doctor", "--python", str(python), "--hardware", NO_GPU, "--json", *extra)
    data = json.loads(result.output)
    return result.exit_code, {f["id"]: f for f in data["findings"]}


@pytest.mark.venv
def test_doctor_reports_a_healthy_mxnet(mxnet_venv: Path) -> None:
    _, findings = _doctor_json(mxnet_venv)
    assert findings["mxnet"]["status"] == "ok"
    assert findings["mxnet"]["title"] == "mxnet 1.9.1 is the recommended flavor"
    assert findings["numpy"]["status"] == "ok"
    assert findings["numpy"]["title"] == "numpy 1.23.5 works with mxnet 1.9.1"
    assert findings["env.KMP_AFFINITY"]["title"].endswith("uses GNU OpenMP")
    # the venv has no keras: that is a warning, not a failure of mxnet
    assert findings["keras"]["status"] == "warn"


@pytest.mark.venv
def test_warnings_exit_0_and_strict_makes_them_fail(mxnet_venv: Path) -> None:
    args = ["doctor", "--python", str(mxnet_venv), "--hardware", NO_GPU]
    env = {"OMP_NUM_THREADS": "2"}
    result = invoke(*args, env=env)
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output and "! keras: Keras-MXNet is not installed" in result.output
    strict = invoke(*args, "--strict", env=env)
    assert strict.exit_code == 1
    assert "(--strict: warnings fail)" in strict.output


@pytest.mark.venv
def test_doctor_deep_imports_mxnet_in_the_target(mxnet_venv: Path) -> None:
    _, findings = _doctor_json(mxnet_venv, "--deep")
    f = findings["mxnet.import"]
    assert f["status"] == "ok" and "MKLDNN" in f["detail"]


@pytest.mark.venv
def test_doctor_flags_numpy_124_and_its_fix_works(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "np124", ["mxnet==1.9.1", "numpy==1.24.4"])
    code, findings = _doctor_json(python, "--deep")
    numpy = findings["numpy"]
    assert code == 1
    assert numpy["status"] == "fail"
    assert numpy["title"] == (
        "numpy 1.24.4 breaks mxnet 1.9.1: import mxnet fails with numpy >= 1.24"
    )
    assert numpy["fix"] == f"{python} -m pip install 'numpy<1.24'"
    assert findings["mxnet.import"]["status"] == "fail"  # --deep saw the real import fail
    assert "bool" in findings["mxnet.import"]["detail"]

    # run the printed fix as a shell would, then ask again
    subprocess.run([*shlex.split(numpy["fix"]), "-q"], check=True)
    _, after = _doctor_json(python, "--deep")
    assert after["numpy"]["status"] == "ok"
    assert after["mxnet.import"]["status"] == "ok"


KERAS_MXNET_REQS = ["mxnet==1.9.1", "numpy==1.23.5", "scipy<1.11", "keras-mxnet==2.2.4.3"]
NEW_PYTHON = sys.version_info >= (3, 10)


@pytest.fixture(scope="module")
def keras_mxnet_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mxnet 1.9.1 and keras-mxnet 2.2.4.3 with everything it imports (read-only)."""
    return make_venv(tmp_path_factory.mktemp("keras-mxnet") / "venv", KERAS_MXNET_REQS)


@pytest.mark.venv
@pytest.mark.skipif(not NEW_PYTHON, reason="keras-mxnet imports on Python <= 3.9")
def test_keras_mxnet_on_new_python_fails_statically_and_deep(
    keras_mxnet_venv: Path, tmp_path: Path
) -> None:
    code, findings = _doctor_json(keras_mxnet_venv)
    assert code == 1
    assert findings["keras.python"]["status"] == "fail"
    assert "fails to import on Python 3." in findings["keras.python"]["title"]
    # the venv is made with a Python 3.6-3.9 this machine has, named by its path
    first = shlex.split(findings["keras.python"]["fix"].split(" && ")[0])
    assert first[1:] == ["-m", "venv", "~/venvs/keras-mxnet"] and os.path.isfile(first[0])

    code, findings = _doctor_json(keras_mxnet_venv, "--deep")
    deep = findings["keras.import"]
    assert deep["status"] == "fail"
    assert "cannot import name 'Iterable' from 'collections'" in deep["detail"]
    # importing keras writes ~/.keras/keras.json on first use: doctor must not
    assert not (Path(os.environ["HOME"]) / ".keras").exists()
    assert findings["keras.json"]["title"].startswith("no keras.json yet")


@pytest.mark.venv
def test_plain_keras_installed_over_keras_mxnet_fails(tmp_path: Path) -> None:
    """`pip install keras` after keras-mxnet overwrites keras/backend/__init__.py with
    one that never loads the mxnet_backend.py left behind: the backend is gone."""
    python = make_venv(tmp_path / "v")
    pip_install(python, ["--no-deps", "keras-mxnet==2.2.4.3"])
    pip_install(python, ["--no-deps", "keras==2.2.4"])
    code, findings = _doctor_json(python)
    keras = findings["keras"]
    assert code == 1
    assert keras["status"] == "fail"
    assert keras["title"] == (
        "`import keras` finds keras 2.2.4 installed over keras-mxnet, which has no MXNet backend"
    )
    assert "never loads" in keras["detail"]

    # the other order leaves keras-mxnet's files in place: only a warning
    pip_install(python, ["--no-deps", "--force-reinstall", "keras-mxnet==2.2.4.3"])
    _, findings = _doctor_json(python)
    assert findings["keras"]["status"] == "warn"
    assert findings["keras"]["title"] == ("both keras 2.2.4 and keras-mxnet 2.2.4.3 are installed")
