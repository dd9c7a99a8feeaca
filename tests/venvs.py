"""Throwaway virtual environments for integration tests: real venvs, real pip,
real wheels from the package index (pip's cache makes repeats fast)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MXNET_REQUIREMENTS = ["mxnet==1.9.1", "numpy==1.23.5"]
KERAS_REQUIREMENTS = ["keras-mxnet==2.2.4.3", *MXNET_REQUIREMENTS]


def pip_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    return env


def make_venv(path: Path, requirements: list[str] | None = None, base: Path | None = None) -> Path:
    """Create a venv at *path* (with pip) from *base* (default: this interpreter) and
    install *requirements*; return its python."""
    subprocess.run([str(base or sys.executable), "-m", "venv", str(path)], check=True)
    python = path / "bin" / "python"
    if requirements:
        pip_install(python, requirements)
    return python


def pip_install(python: Path, requirements: list[str]) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *requirements],
        check=True,
        env=pip_env(),
    )


def pip_freeze(python: Path) -> dict[str, str]:
    """{normalized name: version} of what is installed in the venv."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        check=True,
        capture_output=True,
        text=True,
        env=pip_env(),
    ).stdout
    result = {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            result[name.lower().replace("_", "-")] = version
    return result


def pyenv_python(version: str) -> Path:
    """The pyenv interpreter for *version* ("3.6", "3.8", "2.7": the newest patch
    release installed), or skip the test saying which one it needs."""
    import pytest

    root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if not Path(root).is_dir():
        root = "/root/.pyenv"  # tests run with HOME redirected; pyenv stays where it is
    found = sorted(
        Path(root, "versions").glob(f"{version}.*/bin/python"),
        key=lambda p: [int(x) for x in p.parent.parent.name.split(".") if x.isdigit()],
    )
    if not found:
        pytest.skip(f"needs a Python {version} interpreter (pyenv: {root}/versions/{version}.*)")
    return found[-1]
