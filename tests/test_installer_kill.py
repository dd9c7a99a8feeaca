"""Signals at every stage of a real install (offline, the stand-in wheels of
test_installer_tx.py): SIGINT, SIGTERM and SIGHUP to the process group, and SIGKILL,
a random fraction of a second after one of six moments -- the start (planning), the way
back being fetched, pip's removal of the old flavor's dist-info, the new install, the
verification, the rollback itself. Whatever the moment, the target ends as it was
(pip's list and the files in site-packages) by the run's own rollback or, after a
SIGKILL, by ``install-mxnet --restore``, and nothing is left in the cache.
``KMX_KILL_TRIALS`` sets the number of trials (default 8; 24 covers every pair)."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from kmx_tune.install import journal
from tests.cli import kmx
from tests.install_env import (
    EPYC,
    Running,
    clone_venv,
    disk_tree,
    fake_wheel_folder,
    installed,
    site_packages,
    template_venv,
    wait_until_gone,
)

pytestmark = pytest.mark.kill

TRIALS = int(os.environ.get("KMX_KILL_TRIALS", "8"))
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL)
MOMENTS = ("starting", "keeping", "uninstalled", "installing", "verifying", "rolling back")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_wheel_folder(tmp_path_factory.mktemp("fake-wheels"))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Path:
    return template_venv(tmp_path_factory.mktemp("template"), wheels)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_a_signal_at_a_random_moment_leaves_the_target_as_it_was(
    template: Path, wheels: Path, tmp_path: Path, trial: int
) -> None:
    rng = random.Random(trial)
    moment = MOMENTS[trial % len(MOMENTS)]
    signum = SIGNALS[(trial // len(MOMENTS)) % len(SIGNALS)]
    delay = rng.uniform(0.3, 2.0) if moment == "starting" else rng.uniform(0.0, 0.3)
    python = clone_venv(template, tmp_path / "venv")
    site = site_packages(tmp_path / "venv")
    before, tree = installed(python), disk_tree(site)

    running = Running.start(
        ["install-mxnet", "--python", str(python), "--hardware", str(EPYC), "--yes",
         "--no-index", "--find-links", str(wheels)]
    )  # fmt: skip
    marks = {
        "starting": lambda: True,  # then up to 2 s: planning, before any change
        "keeping": lambda: "> Keeping a way back" in running.err,
        "uninstalled": lambda: not (site / "mxnet_native-1.8.0.post0.dist-info").exists(),
        "installing": lambda: "> Installing" in running.err,
        "verifying": lambda: "> Verifying" in running.err,
        "rolling back": lambda: "> Rolling back" in running.err,
    }
    assert running.wait_for(marks[moment]), running.err
    running.wait_for(lambda: False, timeout=delay)
    ended_first = running.proc.poll() is not None
    if not ended_first:
        running.signal(signum, group=True)
    code = running.finish()
    folder = journal.folder_for(str(tmp_path / "venv"))
    name = signal.Signals(signum).name
    where = f"trial {trial}: {name} {delay:.2f} s after {moment}, exit {code}"

    if signum == signal.SIGKILL and not ended_first:
        saved = journal.load(folder) if folder.exists() else None
        if saved is not None and saved.child is not None:
            wait_until_gone(saved.child[0])
        restored = kmx("install-mxnet", "--python", str(python), "--restore")
        assert restored.exit_code == 0, f"{where}: {restored.output}"
    else:
        # the run's own rollback; or it ended before the signal (a failed verification,
        # rolled back); a signal during the rollback is ignored (exit 1)
        assert code in (1, 128 + signum), f"{where}\n{running.err}"
        assert "Traceback" not in running.err, where
    assert installed(python) == before, where
    assert disk_tree(site) == tree, where
    assert not folder.exists(), where
    log = os.environ.get("KMX_KILL_LOG")  # where each trial landed, for the counts
    if log:
        if ended_first:
            landed = "ended before the signal"
        elif signum == signal.SIGKILL:
            landed = "killed: restored from the journal" if saved else "killed: nothing changed"
        elif "rolled back;" in running.err:
            landed = "rolled back"
        elif code == 1:
            landed = "ignored: the rollback ran to its end"
        else:
            landed = "stopped before anything changed"
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{name}\t{moment}\t{landed}\n")
