"""The installer core for real: real venvs, the target's own pip, real MXNet wheels.
(The fresh install and the rollback run through the CLI in test_cli_install.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune.hardware import load_profile
from kmx_tune.install.availability import check_available
from kmx_tune.install.pip import NotServedError, PipOptions
from kmx_tune.install.plan import InstallPlan, plan_install
from kmx_tune.install.transaction import execute
from kmx_tune.target import Target
from tests.conftest import HARDWARE
from tests.venvs import make_venv, pip_freeze, pip_install

pytestmark = pytest.mark.venv

EPYC = HARDWARE / "epyc-no-gpu" / "kmx-profile.json"
NATIVE = ["mxnet-native==1.8.0.post0", "numpy==1.23.5"]


def plan_191(python: Path) -> InstallPlan:
    """The advisor's plan for the captured no-GPU machine: mxnet 1.9.1, numpy<1.24."""
    plan = plan_install(Target.find(python).facts(), load_profile(EPYC))
    assert plan.requirements == ("mxnet==1.9.1", "numpy<1.24")
    return plan


def test_switch_from_native_leaves_exactly_one_mxnet(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v", NATIVE)
    plan = plan_191(python)
    assert [d.name for d in plan.uninstall] == ["mxnet-native"]
    result = execute(plan, PipOptions())
    assert result.outcome == "installed", result.failure
    mx = {k: v for k, v in pip_freeze(python).items() if k.startswith("mxnet")}
    assert mx == {"mxnet": "1.9.1"}
    assert {c.describe() for c in result.changes} == {"- mxnet-native 1.8.0.post0", "+ mxnet 1.9.1"}


def test_an_empty_wheel_folder_serves_nothing(tmp_path: Path) -> None:
    plan = plan_191(Path(sys.executable))
    with pytest.raises(NotServedError, match="no mxnet wheel for Python"):
        check_available(plan, PipOptions(find_links=(str(tmp_path),), no_index=True))


def test_two_flavors_at_once_end_with_one_working_mxnet(tmp_path: Path) -> None:
    """mxnet-native installed over mxnet: uninstalling mxnet-native deletes the files
    the two share, so mxnet itself must be reinstalled, not found "already satisfied"."""
    python = make_venv(tmp_path / "v", ["mxnet==1.9.1", "numpy==1.23.5"])
    pip_install(python, ["--no-deps", "mxnet-native==1.8.0.post0"])
    plan = plan_191(python)
    result = execute(plan, PipOptions())
    assert result.outcome == "installed", result.failure
    mx = {k: v for k, v in pip_freeze(python).items() if k.startswith("mxnet")}
    assert mx == {"mxnet": "1.9.1"}
    imported = subprocess.run(
        [str(python), "-c", "import mxnet; print(mxnet.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert imported.stdout.strip() == "1.9.1"


def test_a_wheel_folder_without_numpy_says_to_add_it(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "mxnet==1.9.1", "-d",
         str(tmp_path)],
        check=True,
    )  # fmt: skip
    env_python = make_venv(tmp_path / "v")  # no numpy in it: pip must find a wheel
    plan = plan_191(env_python)
    with pytest.raises(NotServedError) as info:
        check_available(plan, PipOptions(find_links=(str(tmp_path),), no_index=True))
    message = str(info.value)
    assert message.startswith("numpy<1.24 (which mxnet==1.9.1 needs) has no wheel")
    assert f"in {tmp_path} (--no-index)" in message and "pip download 'numpy<1.24'" in message
    assert "use a Python that has one" not in message
