"""Finding a Python 3.6-3.9 for keras-mxnet: real interpreters (pyenv's, on this
machine), laid out the way PATH, pyenv, uv and conda keep them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune.interpreters import (
    Interpreter,
    candidates,
    find_keras_environments,
    find_keras_python,
    keras_venv_route,
    probe,
)
from tests.venvs import pip_install, pyenv_python


def _link(link: Path, to: Path) -> Path:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(to)
    return link


def test_pyenv_versions_are_found_by_their_folders(tmp_path: Path) -> None:
    py38 = pyenv_python("3.8")
    root = tmp_path / "pyenv"
    version = py38.parent.parent.name  # "3.8.18"
    _link(root / "versions" / version / "bin" / "python3.8", py38)
    (root / "versions" / "my-virtualenv").mkdir(parents=True)  # not a version: skipped
    env = {"PYENV_ROOT": str(root), "PATH": "", "HOME": str(tmp_path)}
    found = find_keras_python(env)
    assert found == Interpreter(
        str(root / "versions" / version / "bin" / "python3.8"),
        tuple(int(n) for n in version.split(".")),  # type: ignore[arg-type]
        "pyenv",
    )


def test_a_pyenv_shim_on_path_is_not_taken_for_an_interpreter(tmp_path: Path) -> None:
    """`python3.9` on a pyenv machine is a shim that says "command not found" unless
    3.9 is selected: the report's dead end."""
    root = tmp_path / "pyenv"
    shim = root / "shims" / "python3.9"
    shim.parent.mkdir(parents=True)
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.9: command not found' >&2; exit 127\n")
    shim.chmod(0o755)
    env = {"PYENV_ROOT": str(root), "PATH": str(shim.parent), "HOME": str(tmp_path)}
    assert candidates(env) == []
    assert find_keras_python(env) is None


def test_newest_minor_first_and_path_before_pyenv_for_the_same_interpreter(tmp_path: Path) -> None:
    py38, py39 = pyenv_python("3.8"), pyenv_python("3.9")
    bin_dir = tmp_path / "bin"
    _link(bin_dir / "python3.8", py38)
    root = tmp_path / "pyenv"
    _link(root / "versions" / py39.parent.parent.name / "bin" / "python3.9", py39)
    _link(root / "versions" / py38.parent.parent.name / "bin" / "python3.8", py38)
    env = {"PYENV_ROOT": str(root), "PATH": str(bin_dir), "HOME": str(tmp_path)}
    # one entry per interpreter: the same 3.8 on PATH and in pyenv is named as on PATH
    assert [(c.source, c.minor) for c in candidates(env)] == [("pyenv", (3, 9)), ("PATH", (3, 8))]


def test_uv_and_conda_layouts(tmp_path: Path) -> None:
    py38 = pyenv_python("3.8")
    uv = tmp_path / "share" / "uv" / "python" / "cpython-3.8.18-linux-x86_64-gnu"
    _link(uv / "bin" / "python3.8", py38)
    env = {"XDG_DATA_HOME": str(tmp_path / "share"), "PATH": "", "HOME": str(tmp_path)}
    found = find_keras_python(env)
    assert found is not None and found.source == "uv" and found.version[:2] == (3, 8)

    conda_env = tmp_path / "miniconda3" / "envs" / "py38"
    _link(conda_env / "bin" / "python", py38)
    (conda_env / "lib" / "python3.8").mkdir(parents=True)
    env = {"PATH": "", "HOME": str(tmp_path)}
    found = find_keras_python(env)
    assert found == Interpreter(str(conda_env / "bin" / "python"), found.version, "conda")


def test_a_python_that_cannot_make_a_venv_is_passed_over(tmp_path: Path) -> None:
    """Debian's python3.X without python3.X-venv has no ensurepip: `-m venv` fails."""
    fake = tmp_path / "bin" / "python3.9"
    fake.parent.mkdir()
    fake.write_text(
        f"#!/bin/sh\nexec {sys.executable} -c \"import sys; sys.modules['ensurepip'] = None; "
        'exec(sys.argv[-1])" "$@"\n'
    )
    fake.chmod(0o755)
    assert probe(str(fake)) is None
    env = {"PATH": str(fake.parent), "HOME": str(tmp_path)}
    assert find_keras_python(env) is None


def test_this_machines_python_for_keras_really_makes_a_venv(tmp_path: Path) -> None:
    found = find_keras_python()
    if found is None:
        pytest.skip("no Python 3.6-3.9 on this machine")
    route = keras_venv_route(found, ["mxnet==1.9.1", "numpy<1.24"])
    first = route.fix.split(" && ")[0]
    assert first == f"{found.path} -m venv ~/venvs/keras-mxnet"
    venv = tmp_path / "v"
    subprocess.run([found.path, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert (venv / "bin" / "python").exists()


@pytest.mark.venv
def test_environments_with_keras_mxnet_are_found_by_their_files(tmp_path: Path) -> None:
    py38 = pyenv_python("3.8")
    home = tmp_path / "home"
    venv = home / "venvs" / "kvenv"
    subprocess.run([str(py38), "-m", "venv", str(venv)], check=True)
    pip_install(venv / "bin" / "python", ["--no-deps", "keras-mxnet==2.2.4.3"])
    empty = home / "venvs" / "empty"
    subprocess.run([str(py38), "-m", "venv", "--without-pip", str(empty)], check=True)
    env = {"HOME": str(home), "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    found = find_keras_environments(env, cwd=tmp_path)
    assert found == [str(venv / "bin" / "python")]
    assert os.access(found[0], os.X_OK)


def test_a_working_interpreter_is_remembered_and_tried_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warm doctor run starts no process for the finder; a changed file is tried again."""
    import kmx_tune.interpreters as interpreters

    py38 = pyenv_python("3.8")
    runs: list[str] = []

    def counting(path: str) -> tuple[int, int, int] | None:
        runs.append(path)
        return probe(path)

    monkeypatch.setattr(interpreters, "probe", counting)
    wrapper = tmp_path / "bin" / "python3.8"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {py38} "$@"\n')
    wrapper.chmod(0o755)
    first = interpreters.probe_cached(str(wrapper))
    again = interpreters.probe_cached(str(wrapper))
    assert first == again and first is not None and first[:2] == (3, 8)
    assert len(runs) == 1
    wrapper.write_text(f'#!/bin/sh\n# changed\nexec {py38} "$@"\n')
    interpreters.probe_cached(str(wrapper))
    assert len(runs) == 2
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "kmx-tune" / "interpreters.json"
    assert json.loads(cache.read_text())["schema"] == "kmx-tune/interpreters/1"
