"""The target-environment probe: run for real in this interpreter and in venvs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune.dists import is_mxnet_distribution
from kmx_tune.errors import KmxError, TargetError
from kmx_tune.target import Target, resolve_python
from tests.venvs import make_venv


@pytest.mark.parametrize(
    "name",
    ["mxnet", "mxnet-mkl", "mxnet-native", "mxnet-cu117", "mxnet-cu90mkl", "MXNet_CU101"],
)
def test_every_flavor_name_is_an_mxnet_distribution(name: str) -> None:
    assert is_mxnet_distribution(name)


@pytest.mark.parametrize("name", ["mxnet-model-server", "gluoncv", "keras-mxnet", "mxnetx"])
def test_other_packages_are_not_mxnet_flavors(name: str) -> None:
    assert not is_mxnet_distribution(name)


def test_current_interpreter_is_the_default() -> None:
    info = Target.find(None).facts()
    assert info.python == sys.executable
    assert info.version == tuple(sys.version_info[:3])
    assert info.dist("click") is not None  # kmx-tune's own dependency is seen
    assert info.has_pip


def test_missing_interpreter_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        resolve_python(tmp_path / "nope" / "python")


def test_a_file_that_is_not_python_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(TargetError, match="does not work as a Python"):
        Target.find(fake).facts()


def test_a_venv_folder_resolves_to_its_python(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v")
    assert resolve_python(tmp_path / "v") == str(python)


@pytest.mark.venv
def test_reads_mxnet_and_numpy_without_importing_them(mxnet_venv: Path) -> None:
    info = Target.find(mxnet_venv).facts()
    assert [(d.name, d.version) for d in info.mxnet_distributions] == [("mxnet", "1.9.1")]
    assert info.numpy_version == "1.23.5"
    assert info.in_venv
    assert info.runtime is None
    assert info.keras.module_path is None


@pytest.mark.venv
def test_deep_mode_imports_mxnet_and_reads_its_features(mxnet_venv: Path) -> None:
    info = Target.find(mxnet_venv).facts(deep=True)
    assert info.runtime is not None
    assert info.runtime.mxnet_import_error is None
    assert info.runtime.mxnet_version == "1.9.1"
    assert info.runtime.features is not None
    assert info.runtime.features["MKLDNN"] is True
    assert info.runtime.features["CUDA"] is False
    assert info.runtime.num_gpus == 0


def test_a_hanging_interpreter_times_out_with_one_line(tmp_path: Path) -> None:
    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(KmxError, match="gave no answer within 1 s"):
        Target(str(slow)).run_json("kmx_env_facts.py", timeout=1)


def test_a_bare_name_in_the_current_folder_is_that_file_not_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd venv/bin && kmx-tune doctor --python python` checks venv/bin/python, not the
    `python` that PATH finds (exec looks names without a slash up on PATH)."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.chdir(venv / "bin")
    info = Target.find("python").facts()
    assert Path(info.prefix) == venv
    monkeypatch.chdir(tmp_path)
    assert Path(Target.find("v").facts().prefix) == venv  # a venv folder named bare


def test_a_script_in_the_current_folder_is_run_not_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "notpython"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TargetError) as info:
        Target.find("notpython").facts()
    assert "No such file" not in str(info.value)
    assert "printed no report" in str(info.value)


def _python2() -> str | None:
    """A working Python 2 interpreter, if this machine has one (pyenv shims may not work)."""
    candidates = [shutil.which("python2.7"), shutil.which("python2")]
    candidates += [str(p) for p in sorted(Path("/root/.pyenv/versions").glob("2.*/bin/python"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[0])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "2":
            return candidate
    return None


PYTHON2 = _python2()


@pytest.mark.skipif(PYTHON2 is None, reason="needs a Python 2 interpreter")
def test_python_2_is_named_as_too_old() -> None:
    with pytest.raises(TargetError) as info:
        Target.find(PYTHON2).facts()
    message = str(info.value)
    assert "is Python 2.7" in message and "3.6 or newer" in message
    assert "TypeError" not in message
