"""`kmx-tune install-mxnet` as a user runs it: plans from the captured hardware
profiles, bad input refused in one line with nothing changed, and real installs
(real venvs, real pip, real wheels) that either work or roll back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli import kmx
from tests.conftest import HARDWARE
from tests.venvs import make_venv, pip_freeze, pyenv_python

H100 = HARDWARE / "h100-intel-xeon" / "kmx-profile.json"
EPYC = HARDWARE / "epyc-no-gpu" / "kmx-profile.json"
RTX3090 = HARDWARE / "synthetic" / "rtx3090-driver-535.json"
PY = sys.executable  # kmx-tune's own venv: no mxnet in it, and dry runs change nothing


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = kmx("install-mxnet", *args, env=env)
    return result.exit_code, result.stdout, result.stderr


def _plan(*args: str) -> dict[str, Any]:
    code, out, err = _run("--python", PY, "--dry-run", "--json", *args)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_help_has_an_example() -> None:
    code, out, _ = _run("--help")
    assert code == 0 and "Example:" in out and "--find-links" in out


# ------------------------------------------------------------ planning (pip checks only)


@pytest.mark.network
def test_h100_plan_is_a_cpu_flavor_with_a_warning_saying_why() -> None:
    plan = _plan("--hardware", str(H100))
    assert {"package", "version", "requirements", "uninstall", "reasons", "warnings"} <= set(plan)
    assert (plan["package"], plan["version"], plan["gpu"]) == ("mxnet", "1.9.1", False)
    assert plan["requirements"] == ["mxnet==1.9.1", "numpy<1.24"]
    assert any("compute capability 9.0" in w and "no kernel image" in w for w in plan["warnings"])
    assert "MXNET_CUDA_ARCH" in plan["build_from_source"]


@pytest.mark.network
def test_no_gpu_plan_is_plain_mxnet_with_mkldnn() -> None:
    plan = _plan("--hardware", str(EPYC))
    assert (plan["package"], plan["gpu"], plan["expect_mkldnn"]) == ("mxnet", False, True)
    assert "no NVIDIA GPU found" in plan["reasons"][0]


@pytest.mark.network
def test_ampere_plan_is_a_cuda_flavor_unless_cpu_is_asked() -> None:
    plan = _plan("--hardware", str(RTX3090))
    assert plan["package"].startswith("mxnet-cu") and plan["gpu"] is True
    cpu = _plan("--hardware", str(RTX3090), "--cpu")
    assert (cpu["package"], cpu["gpu"]) == ("mxnet", False)


@pytest.mark.network
def test_flavor_and_version_override_the_advice_and_say_so() -> None:
    plan = _plan("--hardware", str(EPYC), "--flavor", "mxnet-native", "--version", "1.7.0")
    assert plan["requirements"] == ["mxnet-native==1.7.0", "numpy<1.24"]
    assert plan["reasons"] == [
        "mxnet-native: given with --flavor",
        "version 1.7.0: given with --version",
    ]
    assert plan["expect_mkldnn"] is False
    assert any("the advice for this machine is mxnet==1.9.1" in w for w in plan["warnings"])


@pytest.mark.network
def test_text_plan_shows_what_goes_what_comes_and_why() -> None:
    code, out, _ = _run("--python", PY, "--dry-run", "--hardware", str(H100))
    assert code == 0
    assert "install    mxnet==1.9.1 numpy<1.24" in out
    assert "why" in out and "warning" in out and "Dry run: nothing changed." in out


# ------------------------------------------------------------ bad input: one line, exit 2


def _one_line_error(*args: str, env: dict[str, str] | None = None) -> str:
    code, out, err = _run(*args, env=env)
    assert code == 2, (out, err)
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


def test_unknown_flavor_lists_the_valid_ones() -> None:
    err = _one_line_error("--python", PY, "--hardware", str(EPYC), "--flavor", "mxnet-cu90-mkl")
    assert "unknown MXNet flavor" in err and "mxnet-cu90mkl" in err and "mxnet-native" in err


@pytest.mark.network
def test_a_version_not_served_is_refused() -> None:
    err = _one_line_error("--python", PY, "--hardware", str(EPYC), "--version", "1.9.2")
    assert "mxnet==1.9.2 is not served for Python" in err and "available: 1.9.1" in err


def test_a_version_that_is_not_a_version_number_is_refused_before_asking_pip() -> None:
    err = _one_line_error("--python", PY, "--hardware", str(EPYC), "--version", "latest")
    assert "--version latest: not a version number" in err


def test_gpu_flavor_with_cpu_is_a_contradiction() -> None:
    err = _one_line_error("--python", PY, "--hardware", str(EPYC), "--cpu", "--flavor", "cu117")
    assert "unknown MXNet flavor" in err  # cu117 alone is not a package name
    err = _one_line_error(
        "--python", PY, "--hardware", str(EPYC), "--cpu", "--flavor", "mxnet-cu117"
    )
    assert "contradict" in err


def test_python_that_is_not_python(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    assert "does not work as a Python" in _one_line_error("--python", str(fake), "--yes")


def test_python_without_pip(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    err = _one_line_error("--python", str(tmp_path / "v"), "--hardware", str(EPYC), "--yes")
    assert "has no pip" in err and "ensurepip" in err


@pytest.mark.network
def test_no_index_is_offline_and_points_at_find_links() -> None:
    err = _one_line_error(
        "--python", PY, "--hardware", str(EPYC), "--index-url", "http://127.0.0.1:9/simple",
        env={"PIP_RETRIES": "0"},
    )  # fmt: skip
    assert "offline" in err and "--no-index --find-links DIR" in err


def test_no_index_with_an_empty_wheel_folder_says_what_to_put_there(tmp_path: Path) -> None:
    err = _one_line_error(
        "--python", PY, "--hardware", str(EPYC), "--dry-run", "--no-index",
        "--find-links", str(tmp_path),
    )  # fmt: skip
    assert f"no mxnet wheel for Python {sys.version_info[0]}." in err
    assert f"in {tmp_path}" in err
    assert "choose another flavor" not in err  # the flavor is right; the folder is empty
    assert "pip download mxnet==1.9.1 'numpy<1.24'" in err and f"-d {tmp_path}" in err


def test_restore_takes_no_plan_options() -> None:
    err = _one_line_error("--python", PY, "--restore", "--flavor", "mxnet", "--dry-run")
    assert "--restore puts back what was there before; it takes no --flavor, --dry-run" in err


def test_restore_with_nothing_to_restore_says_so() -> None:
    code, out, _ = _run("--python", PY, "--restore")
    assert code == 0
    assert out == f"Nothing to restore: no interrupted install-mxnet left a journal for {PY}.\n"
    code, out, _ = _run("--python", PY, "--restore", "--json")
    assert (code, json.loads(out)["outcome"]) == (0, "nothing-to-restore")


@pytest.mark.network
def test_without_yes_and_without_a_terminal_it_asks_for_yes() -> None:
    err = _one_line_error("--python", PY, "--hardware", str(EPYC))
    assert "add --yes" in err


# ------------------------------------------------------------ real installs


@pytest.mark.venv
def test_real_install_into_a_fresh_venv(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v")
    code, out, err = _run("--python", str(python), "--hardware", str(EPYC), "--yes", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["outcome"] == "installed"
    assert result["verification"]["mxnet_version"] == "1.9.1"
    assert result["verification"]["features"]["MKLDNN"] is True
    assert "Installing mxnet==1.9.1 numpy<1.24" in err  # the steps are shown on stderr
    versions = subprocess.run(
        [str(python), "-c", "import mxnet, numpy; print(mxnet.__version__, numpy.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions[0] == "1.9.1"
    assert tuple(int(p) for p in versions[1].split(".")[:2]) < (1, 24)


@pytest.mark.venv
def test_real_failed_verification_rolls_back(tmp_path: Path) -> None:
    """A real failure, no test hook: MXNET_LIBRARY_PATH naming a file that is not a
    shared library makes `import mxnet` fail in the verify step (pip never imports
    mxnet), as a stale MXNET_LIBRARY_PATH in a user's shell would."""
    python = make_venv(tmp_path / "v", ["mxnet-native==1.8.0.post0", "numpy==1.23.5"])
    before = pip_freeze(python)
    bogus = tmp_path / "libmxnet.so"
    bogus.write_text("not a shared library\n")

    code, out, err = _run(
        "--python", str(python), "--hardware", str(EPYC), "--yes",
        env={"MXNET_LIBRARY_PATH": str(bogus)},
    )  # fmt: skip

    assert code == 1, err
    assert "Failed: verification failed: import mxnet failed: OSError" in out
    assert "Rolled back: the environment is as it was before" in out
    after = pip_freeze(python)
    assert after == before
    assert after["mxnet-native"] == "1.8.0.post0" and "mxnet" not in after


@pytest.mark.network
def test_python_36s_old_pip_gets_the_upgrade_that_works_there(tmp_path: Path) -> None:
    """A Python 3.6 venv comes with pip 18.1, which cannot see manylinux2014 wheels; a plain
    `pip install --upgrade pip` fails there (newer pips need Python >= 3.7), so the advice
    pins the newest pip for 3.6."""
    venv = tmp_path / "v36"
    subprocess.run([str(pyenv_python("3.6")), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    code, _, err = _run("--python", str(python), "--dry-run", "--hardware", str(EPYC))
    assert code == 2
    assert "cannot see manylinux2014 wheels" in err
    assert f"`{python} -m pip install --upgrade 'pip<22'`" in err
