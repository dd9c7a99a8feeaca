"""Shared fixtures. One autouse fixture isolates every test from the real home
folder, Keras and MXNet environment variables and the kmx-tune cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.venvs import KERAS_REQUIREMENTS, MXNET_REQUIREMENTS, make_venv, pip_install, pyenv_python

# CI runs the property tests derandomized, so a red run always means the change broke
# something; a developer's runs explore new inputs each time.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

FIXTURES = Path(__file__).parent / "fixtures"
HARDWARE = FIXTURES / "hardware"
KERAS_JSON = FIXTURES / "keras-json"

_ENV_TO_CLEAR = [
    "KERAS_HOME",
    "KERAS_BACKEND",
    "OMP_NUM_THREADS",
    "KMP_AFFINITY",
    "MXNET_CUDNN_AUTOTUNE_DEFAULT",
    "MXNET_SUBGRAPH_BACKEND",
    "MXNET_PROFILER_AUTOSTART",
    "KMX_TUNE_CACHE_DIR",
    # the default --python target comes from these: tests that rely on it set them
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
]


# The slow tiers. Each test that needs one carries its marker; `slow` is added to all of
# them, so `python -m pytest -m "not slow"` is the fast tier for day-to-day work.
SLOW_TIERS = ("venv", "network", "fuzz", "kill")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if {"mxnet_venv", "keras_venv"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.venv)
        if item.get_closest_marker("venv") is not None:
            item.add_marker(pytest.mark.network)  # real wheels come from the package index
        if any(item.get_closest_marker(tier) for tier in SLOW_TIERS):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # pip keeps using the real cache so venv installs stay fast
    monkeypatch.setenv(
        "PIP_CACHE_DIR", os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    )
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture(scope="session")
def mxnet_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with mxnet==1.9.1 and numpy==1.23.5 (a healthy CPU set-up).

    Shared by the whole session: tests must NOT install into or uninstall from it.
    Tests that change an environment make their own with tests.venvs.make_venv."""
    return make_venv(tmp_path_factory.mktemp("mxnet-venv") / "venv", MXNET_REQUIREMENTS)


@pytest.fixture(scope="session")
def keras_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """keras-mxnet 2.2.4.3 with mxnet 1.9.1 and numpy 1.23.5 on Python 3.8 (keras-mxnet
    needs Python <= 3.9), as a new user sets it up. Shared: do not change it."""
    import subprocess

    path = tmp_path_factory.mktemp("keras-venv") / "venv"
    subprocess.run([str(pyenv_python("3.8")), "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    pip_install(python, KERAS_REQUIREMENTS)
    return python
