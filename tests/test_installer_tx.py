"""install-mxnet as a transaction, against real venvs and real pip runs, offline: the
MXNet flavors here are small wheels built by the test (mxnet 1.9.1's import fails, so
every install ends in a rollback unless something stops it first), so that a kill can
land right after pip removed the old flavor's dist-info, many times, in seconds.

kmx-tune runs as a real process for the signal tests (a signal to a test runner's
thread would not be the real thing), in-process through tests.cli otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from kmx_tune.install import journal
from tests.cli import kmx, kmx_json
from tests.fakewheels import fake_flavor, make_wheel
from tests.install_env import (
    EPYC,
    NATIVE_DIST_INFO,
    Running,
    clone_venv,
    disk_tree,
    fake_wheel_folder,
    installed,
    pip,
    site_packages,
    template_venv,
    wait_until_gone,
)


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_wheel_folder(tmp_path_factory.mktemp("fake-wheels"))


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    """A venv with the stand-in mxnet-native 1.8.0.post0, graphviz 0.8.4, numpy 1.23.5."""
    return template_venv(tmp_path_factory.mktemp("template"), wheels)


@pytest.fixture
def python(template: Path, tmp_path: Path) -> Path:
    return clone_venv(template, tmp_path / "venv")


def install_args(python: Path, wheels: Path, *more: str) -> list[str]:
    return [
        "install-mxnet", "--python", str(python), "--hardware", str(EPYC), "--yes",
        "--no-index", "--find-links", str(wheels), *more,
    ]  # fmt: skip


def journal_folder(python: Path) -> Path:
    return journal.folder_for(str(python.parent.parent))


def stash(site: Path) -> list[str]:
    return sorted(n for n in os.listdir(site) if n.startswith("~"))


def start_and_signal_after_uninstall(
    python: Path, wheels: Path, signum: int, *, group: bool, wheels_dir: Path | None = None
) -> Running:
    """Start an install and send *signum* as soon as pip has removed the old
    flavor's dist-info (the moment the review's harness chose)."""
    dist_info = site_packages(python.parent.parent) / NATIVE_DIST_INFO
    running = Running.start(install_args(python, wheels_dir or wheels))
    assert running.wait_for(lambda: not dist_info.exists()), running.err
    running.signal(signum, group=group)
    return running


# ------------------------------------------------------------------ D3, B10: signals


@pytest.mark.kill
@pytest.mark.parametrize(
    ("name", "group"),
    [("SIGINT", False), ("SIGINT", True), ("SIGTERM", False), ("SIGTERM", True),
     ("SIGHUP", True)],
)  # fmt: skip
def test_a_signal_after_the_old_flavor_is_gone_rolls_back_disk_and_all(
    python: Path, wheels: Path, name: str, group: bool
) -> None:
    signum = getattr(signal, name)
    site = site_packages(python.parent.parent)
    before, tree = installed(python), disk_tree(site)

    running = start_and_signal_after_uninstall(python, wheels, signum, group=group)
    code = running.finish()

    assert installed(python) == before
    assert stash(site) == []  # B10: pip's ~xnet stash is gone
    assert disk_tree(site) == tree  # the disk, not only pip's list
    assert code == 128 + signum, running.err
    last = running.err.strip().splitlines()[-1]
    assert last.startswith(f"Error: interrupted by {name}: rolled back; the environment is as"), (
        running.err
    )
    assert not journal_folder(python).exists()  # no kit left behind
    assert "Traceback" not in running.err


@pytest.mark.kill
def test_ctrl_c_again_during_the_rollback_does_not_stop_it(python: Path, wheels: Path) -> None:
    before = installed(python)
    running = start_and_signal_after_uninstall(python, wheels, signal.SIGINT, group=True)
    assert running.wait_for(lambda: "rolling back" in running.err), running.err
    for _ in range(3):  # the impatient user, and the terminal's whole process group
        running.signal(signal.SIGINT, group=True)
        running.wait_for(lambda: False, timeout=0.05)
    code = running.finish()
    assert code == 130, running.err
    assert "rolled back; the environment is as it was before" in running.err
    assert installed(python) == before
    assert not journal_folder(python).exists()


@pytest.mark.kill
@pytest.mark.parametrize("group", [False, True], ids=["pid", "group"])
def test_after_kill_9_doctor_and_the_next_run_say_so_and_restore_puts_it_back(
    python: Path, wheels: Path, group: bool
) -> None:
    site = site_packages(python.parent.parent)
    before, tree = installed(python), disk_tree(site)
    running = start_and_signal_after_uninstall(python, wheels, signal.SIGKILL, group=group)
    assert running.finish() == -signal.SIGKILL
    saved = journal.load(journal_folder(python))
    assert saved is not None and saved.step == "uninstalling"
    if saved.child is not None:  # killed alone, kmx-tune's pip runs on: let it end
        wait_until_gone(saved.child[0])
    assert "mxnet-native" not in installed(python)  # the damage the journal is for

    plan = kmx("install-mxnet", "--python", str(python), "--dry-run", "--no-index",
               "--find-links", str(wheels))  # fmt: skip
    assert plan.exit_code == 1
    assert "an interrupted kmx-tune install-mxnet changed" in plan.stderr
    assert f"kmx-tune install-mxnet --python {python} --restore" in plan.stderr

    code, report = kmx_json("doctor", "--python", str(python), "--hardware", str(EPYC))
    (finding,) = [f for f in report["findings"] if f["id"] == "install"]
    assert code == 1 and finding["status"] == "fail"
    assert finding["fix"] == f"kmx-tune install-mxnet --python {python} --restore"

    if group:  # the restore as `doctor --fix` applies it
        fixed = kmx("doctor", "--python", str(python), "--hardware", str(EPYC), "--fix", "--yes")
        assert f"kmx-tune install-mxnet --python {python} --restore" in fixed.stdout
        assert "put back what the interrupted install had changed" in fixed.stdout, fixed.output
    else:
        restored = kmx("install-mxnet", "--python", str(python), "--restore")
        assert restored.exit_code == 0, restored.output
        assert "Restored:" in restored.stdout
    assert installed(python) == before
    assert stash(site) == [] and disk_tree(site) == tree
    assert not journal_folder(python).exists()
    code, report = kmx_json("doctor", "--python", str(python), "--hardware", str(EPYC))
    assert [f for f in report["findings"] if f["id"] == "install"] == []
    again = kmx("install-mxnet", "--python", str(python), "--restore")
    assert again.exit_code == 0 and "Nothing to restore" in again.stdout


@pytest.mark.kill
def test_kill_9_in_the_middle_of_the_new_install_is_repaired_on_disk(
    python: Path, wheels: Path
) -> None:
    """pip killed while it writes the new flavor: part of its files and maybe its
    metadata are there. The restore leaves exactly the old files."""
    site = site_packages(python.parent.parent)
    before, tree = installed(python), disk_tree(site)
    running = Running.start(install_args(python, wheels))
    assert running.wait_for(lambda: (site / "mxnet" / "part_075.py").exists() and any(
        "Installing mxnet" in line for line in running.stderr
    )), running.err  # fmt: skip
    running.signal(signal.SIGKILL, group=True)
    running.finish()
    restored = kmx("install-mxnet", "--python", str(python), "--restore")
    assert restored.exit_code == 0, restored.output
    assert installed(python) == before
    assert disk_tree(site) == tree


# ------------------------------------------------------------------ D2: printing


@pytest.mark.venv
def test_a_failure_message_with_markup_is_printed_as_text_and_rolled_back(
    python: Path, tmp_path: Path, wheels: Path
) -> None:
    folder = tmp_path / "markup"
    folder.mkdir()
    for wheel in wheels.iterdir():
        if not wheel.name.startswith("mxnet-1.9.1"):
            (folder / wheel.name).symlink_to(wheel)
    message = "libmxnet.so not found in [/opt/mxnet/lib] [red]x"
    fake_flavor(folder, "mxnet", "1.9.1", import_error=message)
    before = installed(python)
    result = kmx(*install_args(python, folder))
    assert result.exit_code == 1, result.output
    assert f"ImportError: {message}" in result.stdout
    assert "Rolled back: the environment is as it was before" in result.stdout
    assert installed(python) == before


@pytest.mark.venv
def test_a_log_that_cannot_print_does_not_skip_the_rollback(python: Path, wheels: Path) -> None:
    """The terminal is gone (EIO on every write): the rollback runs all the same."""
    from kmx_tune.hardware import load_profile
    from kmx_tune.install.pip import PipOptions
    from kmx_tune.install.plan import plan_install
    from kmx_tune.install.transaction import execute
    from kmx_tune.target import Target

    def dead_terminal(_: str) -> None:
        raise OSError(5, "Input/output error")

    before = installed(python)
    facts = Target.find(python).facts()
    plan = plan_install(facts, load_profile(EPYC))
    pip_options = PipOptions(find_links=(str(wheels),), no_index=True)
    result = execute(plan, pip_options, facts, log=dead_terminal)
    assert result.outcome == "rolled-back", result.rollback_problem
    assert installed(python) == before


# ------------------------------------------------------------------ D4: the way back


def _with_graphviz_020(python: Path, wheels: Path) -> None:
    run = pip(python, "install", "--no-deps", "--no-index", "--find-links", str(wheels),
              "graphviz==0.20.1")  # fmt: skip
    assert run.returncode == 0, run.stderr


def _folder_without(wheels: Path, dest: Path, *prefixes: str) -> Path:
    dest.mkdir()
    for wheel in wheels.iterdir():
        if not wheel.name.startswith(prefixes):
            (dest / wheel.name).symlink_to(wheel)
    return dest


@pytest.mark.venv
def test_a_dependency_pip_would_change_and_cannot_fetch_again_stops_before_any_change(
    template: Path, tmp_path: Path, wheels: Path
) -> None:
    python = clone_venv(template, tmp_path / "my venv")  # a space: the commands are quoted
    _with_graphviz_020(python, wheels)
    before = installed(python)
    folder = _folder_without(wheels, tmp_path / "w", "graphviz-0.20.1")
    result = kmx(*install_args(python, folder))
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "Error: nothing changed: the install would change graphviz 0.20.1, and pip cannot "
        "fetch its wheel again"
    ), result.stderr
    assert f"'{python}' -m pip uninstall -y graphviz" in result.stderr
    assert installed(python) == before
    assert not journal_folder(python).exists()


@pytest.mark.venv
def test_a_downgraded_dependency_comes_back_from_the_kit(
    python: Path, tmp_path: Path, wheels: Path
) -> None:
    """graphviz 0.20.1 is fetchable when the install starts and gone when it fails:
    the kit kept it, so graphviz and mxnet-native both come back."""
    _with_graphviz_020(python, wheels)
    before = installed(python)
    folder = _folder_without(wheels, tmp_path / "w")
    running = Running.start(install_args(python, folder))
    assert running.wait_for(lambda: "> Installing mxnet" in running.err), running.err
    (folder / "graphviz-0.20.1-py3-none-any.whl").unlink()  # the index lost it meanwhile
    assert running.finish() == 1, running.err
    assert "Rolled back: the environment is as it was before" in running.stdout, running.stdout
    assert installed(python) == before
    assert before["graphviz"] == "0.20.1"


@pytest.mark.kill
def test_restore_puts_back_what_it_can_when_a_wheel_is_missing(
    python: Path, tmp_path: Path, wheels: Path
) -> None:
    _with_graphviz_020(python, wheels)
    site = site_packages(python.parent.parent)
    before = installed(python)
    folder = _folder_without(wheels, tmp_path / "w")
    running = Running.start(install_args(python, folder))
    assert running.wait_for(lambda: (site / "graphviz-0.8.4.dist-info" / "RECORD").exists())
    running.signal(signal.SIGKILL, group=True)
    running.finish()
    kit = journal_folder(python) / journal.WHEELS
    for wheel in kit.glob("graphviz-*"):
        wheel.unlink()  # the kit lost one wheel, and the index has it no more
    (folder / "graphviz-0.20.1-py3-none-any.whl").unlink()

    result = kmx("install-mxnet", "--python", str(python), "--restore", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["outcome"] == "partly-restored"
    assert data["restore"]["left"] == [{"name": "graphviz", "before": "0.20.1", "after": "0.8.4"}]
    assert any("graphviz==0.20.1" in c and "--no-index" in c for c in data["restore"]["by_hand"])
    now = installed(python)
    assert now["mxnet-native"] == before["mxnet-native"] and "mxnet" not in now
    assert not journal_folder(python).exists()  # nothing more it could do


# ------------------------------------------------------------------ B7: pip's own error


@pytest.mark.venv
def test_a_pip_failure_names_pips_own_error(python: Path, tmp_path: Path, wheels: Path) -> None:
    """pip writes to the terminal (a real file descriptor) and its error is still
    named: the wheel that pip refuses at install time, not at resolve time."""
    folder = _folder_without(wheels, tmp_path / "w", "mxnet-1.9.1")
    make_wheel(folder, "mxnet", "1.9.1", {"mxnet/__init__.py": ""},
               requires=["graphviz<0.9.0,>=0.8.1"],
               raw_entries={"../../../escape.py": b"x = 1\n"})  # fmt: skip
    before = installed(python)
    running = Running.start(install_args(python, folder))
    assert running.finish() == 1, running.err
    failed = running.stdout.splitlines()[-2]
    assert failed.startswith("Failed: pip install failed: For req: mxnet==1.9.1. The wheel"), failed
    assert failed.endswith(
        "trying to install outside the target directory "
        + f"'{site_packages(python.parent.parent)}'"
    )
    assert installed(python) == before


@pytest.mark.venv
def test_an_incomplete_rollback_keeps_the_kit_and_prints_quoted_commands_with_the_options(
    template: Path, tmp_path: Path, wheels: Path
) -> None:
    python = clone_venv(template, tmp_path / "my venv")
    folder = _folder_without(wheels, tmp_path / "wheel dir")
    running = Running.start(install_args(python, folder))
    assert running.wait_for(lambda: "> Installing mxnet" in running.err), running.err
    kit = journal_folder(python) / journal.WHEELS
    for wheel in kit.iterdir():  # the way back lost, in the kit and on the index
        wheel.unlink()
    (folder / "mxnet_native-1.8.0.post0-py3-none-any.whl").unlink()
    assert running.finish() == 1, running.err
    out = running.stdout
    assert "Rollback incomplete: pip install mxnet-native==1.8.0.post0 failed:" in out, out
    assert "still different from before: - mxnet-native 1.8.0.post0" in out
    assert f"The way back is kept in {kit}" in out
    restore = (
        f"kmx-tune install-mxnet --python '{python}' --restore --find-links '{folder}' --no-index"
    )
    assert restore in out
    by_hand = (
        f"'{python}' -m pip install --no-deps mxnet-native==1.8.0.post0 "
        f"--find-links '{folder}' --no-index"
    )
    assert by_hand in out
    assert journal.load(journal_folder(python)) is not None


@pytest.mark.kill
def test_a_target_with_an_old_pip_rolls_back_too(tmp_path: Path, wheels: Path) -> None:
    """Python 3.6 with its own pip 18.1: no --dry-run --report (kmx-tune's pip resolves
    for it), an older list format and uninstall stash; SIGTERM after the uninstall."""
    from tests.venvs import pyenv_python

    venv = tmp_path / "venv36"
    subprocess.run([str(pyenv_python("3.6")), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    run = pip(python, "install", "-q", "--no-index", "--find-links", str(wheels),
              "mxnet-native==1.8.0.post0", "numpy==1.23.5")  # fmt: skip
    assert run.returncode == 0, run.stderr
    site = site_packages(venv)
    before, tree = installed(python), disk_tree(site)
    running = start_and_signal_after_uninstall(python, wheels, signal.SIGTERM, group=False)
    assert running.finish() == 143, running.err
    assert "Error: interrupted by SIGTERM: rolled back" in running.err
    assert installed(python) == before
    assert disk_tree(site) == tree and stash(site) == []
    assert not journal_folder(python).exists()
