"""The installer core for real: real venvs, the target's own pip, real MXNet wheels.
(The fresh install and the rollback run through the CLI in test_cli_install.py; the
signal matrix with small stand-in wheels in test_installer_tx.py.)"""

from __future__ import annotations

import os
import signal
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
from tests.cli import kmx
from tests.conftest import HARDWARE
from tests.install_env import NATIVE_DIST_INFO, Running, clone_venv, disk_tree, site_packages
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


# ------------------------------------------------------------------ the transaction, for real


@pytest.fixture(scope="session")
def native_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the real mxnet-native 1.8.0.post0 and numpy 1.23.5 (cloned per test)."""
    venv = tmp_path_factory.mktemp("native") / "venv"
    make_venv(venv, NATIVE)
    return venv


@pytest.fixture(scope="session")
def real_wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the real wheels an offline install needs (from pip's cache)."""
    folder = tmp_path_factory.mktemp("real-wheels")
    for wanted in (["mxnet==1.9.1", *NATIVE, "graphviz==0.8.4"], ["graphviz==0.20.1"]):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
             "-d", str(folder), *wanted],
            check=True,
        )  # fmt: skip
    return folder


def _imported_mxnet(python: Path) -> str:
    return subprocess.run(
        [str(python), "-c", "import mxnet; print(mxnet.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@pytest.mark.kill
def test_real_sigterm_after_the_uninstall_rolls_back(native_template: Path, tmp_path: Path) -> None:
    """The review's D3 reproduction with the real wheels from the index: SIGTERM as
    soon as pip has removed mxnet-native's dist-info."""
    python = clone_venv(native_template, tmp_path / "v")
    site = site_packages(tmp_path / "v")
    before, tree = pip_freeze(python), disk_tree(site)
    running = Running.start(["install-mxnet", "--python", str(python), "--hardware", str(EPYC),
                             "--yes"])  # fmt: skip
    assert running.wait_for(lambda: not (site / NATIVE_DIST_INFO).exists()), running.err
    running.signal(signal.SIGTERM, group=False)
    assert running.finish() == 143, running.err
    assert "Error: interrupted by SIGTERM: rolled back" in running.err
    assert pip_freeze(python) == before
    assert _imported_mxnet(python) == "1.8.0"
    assert disk_tree(site) == tree and not any(n.startswith("~") for n in os.listdir(site))


@pytest.mark.kill
def test_real_kill_9_then_doctor_then_restore(native_template: Path, tmp_path: Path) -> None:
    python = clone_venv(native_template, tmp_path / "v")
    site = site_packages(tmp_path / "v")
    before, tree = pip_freeze(python), disk_tree(site)
    running = Running.start(["install-mxnet", "--python", str(python), "--hardware", str(EPYC),
                             "--yes"])  # fmt: skip
    assert running.wait_for(lambda: not (site / NATIVE_DIST_INFO).exists()), running.err
    running.signal(signal.SIGKILL, group=True)
    running.finish()
    assert "mxnet-native" not in pip_freeze(python)

    doctor = kmx("doctor", "--python", str(python), "--hardware", str(EPYC))
    assert "✗ install: an interrupted kmx-tune install-mxnet left this environment" in doctor.stdout
    assert f"fix: kmx-tune install-mxnet --python {python} --restore" in doctor.stdout
    restored = kmx("install-mxnet", "--python", str(python), "--restore")
    assert restored.exit_code == 0, restored.output
    assert pip_freeze(python) == before
    assert _imported_mxnet(python) == "1.8.0"
    assert disk_tree(site) == tree


@pytest.mark.venv
def test_real_offline_install_stops_before_a_downgrade_it_could_not_undo(
    native_template: Path, real_wheels: Path, tmp_path: Path
) -> None:
    """D4: mxnet 1.9.1 pins graphviz<0.9; graphviz 0.20.1 is installed and its wheel is
    not in the offline folder: nothing may change."""
    python = clone_venv(native_template, tmp_path / "v")
    pip_install(python, ["--no-deps", "--no-index", "--find-links", str(real_wheels),
                         "graphviz==0.20.1"])  # fmt: skip
    folder = tmp_path / "w"
    folder.mkdir()
    for wheel in real_wheels.iterdir():
        if not wheel.name.startswith("graphviz-0.20.1"):
            (folder / wheel.name).symlink_to(wheel)
    before = pip_freeze(python)
    result = kmx("install-mxnet", "--python", str(python), "--hardware", str(EPYC), "--yes",
                 "--no-index", "--find-links", str(folder))  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Error: nothing changed: the install would change graphviz 0.20.1" in result.stderr
    assert pip_freeze(python) == before
    assert _imported_mxnet(python) == "1.8.0"


@pytest.mark.venv
def test_real_offline_rollback_puts_back_the_downgraded_dependency_too(
    native_template: Path, real_wheels: Path, tmp_path: Path
) -> None:
    """D4, the other way: the import of mxnet 1.9.1 fails (a stale MXNET_LIBRARY_PATH),
    and the rollback brings back graphviz 0.20.1 as well as mxnet-native."""
    python = clone_venv(native_template, tmp_path / "v")
    pip_install(python, ["--no-deps", "--no-index", "--find-links", str(real_wheels),
                         "graphviz==0.20.1"])  # fmt: skip
    before = pip_freeze(python)
    bogus = tmp_path / "libmxnet.so"
    bogus.write_text("not a shared library\n")
    result = kmx("install-mxnet", "--python", str(python), "--hardware", str(EPYC), "--yes",
                 "--no-index", "--find-links", str(real_wheels),
                 env={"MXNET_LIBRARY_PATH": str(bogus)})  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Keeping a way back" in result.stderr and "graphviz==0.20.1" in result.stderr
    assert "Rolled back: the environment is as it was before" in result.stdout
    assert "~ graphviz 0.8.4 -> 0.20.1" in result.stdout
    assert pip_freeze(python) == before
