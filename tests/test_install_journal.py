"""The parts of an install transaction that need no pip run: the journal on disk and
its lock, what counts as changed, the disk snapshot and repair, the signal guard,
the commands printed for what is left, and the pip runner's tee."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmx_tune.dists import Distribution
from kmx_tune.errors import KmxError
from kmx_tune.install import disk, journal
from kmx_tune.install.changes import PackageChange
from kmx_tune.install.journal import DiskSnapshot, Journal, KeptWheel
from kmx_tune.install.pip import PipOptions
from kmx_tune.install.pipstep import run_step
from kmx_tune.install.resolve import Resolution, Resolved
from kmx_tune.install.restore import commands_for
from kmx_tune.install.signals import Guard, Interrupted, guarded
from kmx_tune.install.transaction import never_raises
from kmx_tune.install.wayback import changed_by
from tests.test_installer import plan_for


def make_journal(folder: Path, prefix: str = "/venv", **over: object) -> Journal:
    fields: dict[str, object] = {
        "python": "/venv/bin/python",
        "prefix": prefix,
        "started": "2026-11-30T10:00:00Z",
        "since": 1000.0,
        "pid": 4242,
        "requirements": ("mxnet==1.9.1", "numpy<1.24"),
        "uninstall": ("mxnet-native==1.8.0.post0",),
        "before": {
            "mxnet-native": Distribution("mxnet-native", "1.8.0.post0", "/venv/site"),
            "graphviz": Distribution("graphviz", "0.20.1", "/venv/site"),
        },
        "way_back": (KeptWheel("mxnet-native", "1.8.0.post0", "mxnet_native.whl"),),
        "pip": PipOptions(find_links=("/my wheels",), no_index=True),
        "disk": DiskSnapshot({"/venv/site": ("mxnet",)}, {}, {}),
        "folder": folder,
    }
    fields.update(over)
    return Journal(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ journal and lock


def test_the_journal_lives_in_the_cache_folder_keyed_by_the_real_prefix(tmp_path: Path) -> None:
    real = tmp_path / "venv"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert journal.folder_for(str(tmp_path / "link")) == journal.folder_for(str(real))
    assert journal.folder_for(str(real)).parent == tmp_path / "xdg-cache" / "kmx-tune" / "installs"


def test_a_saved_journal_reads_back_the_same(tmp_path: Path) -> None:
    folder = journal.folder_for("/venv")
    folder.mkdir(parents=True)
    j = make_journal(folder)
    j.save()
    back = journal.load(folder)
    assert back == j
    moved = back.at("installing", (123, "999"))  # type: ignore[union-attr]
    assert journal.load(folder) == moved and moved.child == (123, "999")


def test_a_damaged_journal_is_kept_and_named(tmp_path: Path) -> None:
    folder = journal.folder_for("/venv")
    folder.mkdir(parents=True)
    (folder / journal.JOURNAL).write_text('{"schema": "kmx-tune/install-journal/1"')
    with pytest.raises(KmxError, match="is damaged"):
        journal.load(folder)
    assert (folder / journal.JOURNAL).exists()


def test_one_run_at_a_time_per_target() -> None:
    with journal.locked("/venv", "/venv/bin/python"):
        assert journal.running("/venv")
        busy = pytest.raises(journal.Busy, match="is changing /venv/bin/python now")
        with busy, journal.locked("/venv", "/venv/bin/python"):
            pass
        with journal.locked("/other", "/other/bin/python"):
            pass
    assert not journal.running("/venv")


def test_an_unwritable_cache_folder_stops_before_anything_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("KMX_TUNE_CACHE_DIR", str(blocker))
    refused = pytest.raises(KmxError, match="nothing changed: cannot write kmx-tune's install")
    with refused, journal.locked("/venv", "/venv/bin/python"):
        pass


def test_find_tells_a_run_that_is_gone_from_one_that_runs() -> None:
    folder = journal.folder_for("/venv")
    folder.mkdir(parents=True)
    make_journal(folder).save()
    found = journal.find("/venv")
    assert found is not None and not found.running
    with journal.locked("/venv", "/venv/bin/python"):
        running = journal.find("/venv")
        assert running is not None and running.running
    journal.discard(folder)
    assert journal.find("/venv") is None and not folder.exists()


def test_a_journal_of_a_verified_install_is_not_an_interrupted_one() -> None:
    """Killed after the verification passed: the install is complete, nothing to
    restore (the next run removes the journal)."""
    folder = journal.folder_for("/venv")
    folder.mkdir(parents=True)
    make_journal(folder, step=journal.VERIFIED).save()
    assert journal.find("/venv") is None


def test_a_recorded_process_is_alive_only_while_it_is_the_same_process() -> None:
    me = os.getpid()
    assert journal.process_alive(me, journal.process_start(me))
    assert not journal.process_alive(me, "1")  # the pid reused by another process
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = journal.process_start(child.pid)
    child.wait()
    assert not journal.process_alive(child.pid, start)


def test_restore_command_is_quoted_and_carries_the_index_options() -> None:
    cmd = journal.restore_command(
        "/my venv/bin/python", PipOptions(find_links=("/w d",), no_index=True)
    )
    assert cmd == (
        "kmx-tune install-mxnet --python '/my venv/bin/python' --restore "
        "--find-links '/w d' --no-index"
    )


def test_doctor_names_an_interrupted_install_and_the_restore_command() -> None:
    from tests.test_doctor import NP_OK, find, run, target

    facts = target(("graphviz", "0.8.4"), NP_OK)  # prefix /venv, mxnet-native gone
    assert [f.id for f in run(facts).findings if f.id == "install"] == []  # silent when clean
    folder = journal.folder_for("/venv")
    folder.mkdir(parents=True)
    make_journal(folder).save()
    finding = find(run(facts), "install")
    assert finding.status == "fail"
    assert "removing mxnet-native==1.8.0.post0" in finding.detail and str(folder) in finding.detail
    assert finding.fix == "kmx-tune install-mxnet --python /venv/bin/python --restore"
    with journal.locked("/venv", "/venv/bin/python"):
        running = find(run(facts), "install")
        assert running.status == "warn" and "changing this environment now" in running.title


# ------------------------------------------------------------------ what changes


def test_changed_means_uninstalled_or_replaced_at_another_version() -> None:
    plan = plan_for(dists=[("mxnet-native", "1.8.0.post0"), ("numpy", "1.23.5")])
    before = {
        "mxnet-native": Distribution("mxnet-native", "1.8.0.post0"),
        "numpy": Distribution("numpy", "1.23.5"),
        "graphviz": Distribution("graphviz", "0.20.1"),
        "requests": Distribution("requests", "2.31.0"),
    }
    resolution = Resolution(
        ("mxnet==1.9.1", "numpy<1.24"),
        (
            Resolved("mxnet", "1.9.1", ""),
            Resolved("graphviz", "0.8.4", ""),  # downgraded: kept
            Resolved("numpy", "1.23.5", ""),  # the same: not kept
            Resolved("nvidia-cudnn-cu11", "8.5.0.96", ""),  # new: removed on rollback
        ),
        "test",
    )
    assert [d.requirement for d in changed_by(plan, before, resolution)] == [
        "graphviz==0.20.1",
        "mxnet-native==1.8.0.post0",
    ]


def test_the_cuda_wiring_is_kept_by_building_it_again(tmp_path: Path) -> None:
    """kmx-tune's kmx-mxnet-cuda-libs is on no index: its way back is built again."""
    from kmx_tune.flavors.cuda_libs import WIRING_DIST, plan_pip
    from kmx_tune.flavors.table import LINUX_X86_64, WHEELS
    from kmx_tune.install.wayback import keep_a_way_back

    row = max(
        (w for w in WHEELS if w.platform == LINUX_X86_64 and w.tag == "cu117" and not w.mkl),
        key=lambda w: w.version,
    )
    version = plan_pip(row, "12.0").wiring_version
    assert version
    plan = plan_for()
    kept = keep_a_way_back(
        plan, [Distribution(WIRING_DIST, version)], tmp_path / "kit", PipOptions()
    )
    assert [(k.name, k.version) for k in kept] == [(WIRING_DIST, version)]
    assert (tmp_path / "kit" / kept[0].wheel).is_file()
    with pytest.raises(KmxError, match="cannot build again"):
        keep_a_way_back(
            plan, [Distribution(WIRING_DIST, "1.0+cu999")], tmp_path / "kit", PipOptions()
        )


def test_by_hand_commands_are_quoted_and_carry_the_index_options(tmp_path: Path) -> None:
    folder = tmp_path / "kit dir"
    (folder / journal.WHEELS).mkdir(parents=True)
    (folder / journal.WHEELS / "mxnet_native.whl").write_bytes(b"")
    j = make_journal(folder)
    left = [
        PackageChange("mxnet-native", "1.8.0.post0", None),
        PackageChange("graphviz", "0.20.1", "0.8.4"),
        PackageChange("mxnet", None, "1.9.1"),
    ]
    python = "/my venv/bin/python"
    assert commands_for(left, j.before, j, python, j.pip) == (
        "'/my venv/bin/python' -m pip uninstall -y mxnet",
        f"'/my venv/bin/python' -m pip install --no-deps --force-reinstall --no-index "
        f"--find-links '{folder}/wheels' mxnet-native==1.8.0.post0",
        "'/my venv/bin/python' -m pip install --no-deps graphviz==0.20.1 "
        "--find-links '/my wheels' --no-index",
    )


# ------------------------------------------------------------------ the disk


def _dist(site: Path, name: str, version: str, files: dict[str, str]) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Name: {name}\nVersion: {version}\n")
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    lines = [f"{rel},," for rel in files] + [f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(lines) + "\n")


def test_repair_removes_pips_stash_and_a_half_install_and_nothing_else(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "mxnet-native", "1.8.0.post0", {"mxnet/__init__.py": "old", "mxnet/a.py": "a"})
    (site / "user_notes.txt").write_text("mine")  # not pip's: stays
    (site / "mxnet" / "cache.bin").write_text("made by the user's code before")  # stays
    native = Distribution("mxnet-native", "1.8.0.post0", str(site))
    shot = disk.snapshot({"mxnet-native": native}, [native])
    assert shot.owned[str(site)] == ("mxnet", "mxnet_native-1.8.0.post0.dist-info")
    since = time.time() - 1
    # an interrupted pip: the stash of the uninstall, then part of the new flavor
    (site / "~xnet").mkdir()
    (site / "~xnet" / "a.py").write_text("a")
    (site / "mxnet" / "only_in_191.py").write_text("new")
    (site / "mxnet" / "_ffi").mkdir()
    (site / "mxnet" / "_ffi" / "x.py").write_text("new")
    (site / "mxnet-1.9.1.dist-info").mkdir()  # metadata without RECORD: pip lists it
    (site / "mxnet-1.9.1.dist-info" / "METADATA").write_text("Name: mxnet\nVersion: 1.9.1\n")
    (site / "graphviz").mkdir()  # a new package, half there, no dist-info
    removed, failed = disk.repair(shot, since)
    assert failed == []
    assert sorted(os.path.relpath(p, site) for p in removed) == sorted(
        ["~xnet", "mxnet/only_in_191.py", "mxnet/_ffi/x.py", "mxnet/_ffi",
         "mxnet-1.9.1.dist-info", "graphviz"]
    )  # fmt: skip
    assert (site / "user_notes.txt").exists() and (site / "mxnet" / "cache.bin").exists()
    assert (site / "mxnet" / "a.py").exists()


def test_repair_leaves_files_a_reinstalled_distribution_owns(tmp_path: Path) -> None:
    """A kit wheel that is another build of the same version may bring files the old
    one did not have: RECORD owns them, so they stay."""
    site = tmp_path / "site"
    site.mkdir()
    _dist(site, "mxnet-native", "1.8.0.post0", {"mxnet/__init__.py": "old"})
    native = Distribution("mxnet-native", "1.8.0.post0", str(site))
    shot = disk.snapshot({"mxnet-native": native}, [native])
    since = time.time() - 1
    info = site / "mxnet_native-1.8.0.post0.dist-info"
    (site / "mxnet" / "extra.py").write_text("from the other build")
    (info / "RECORD").write_text((info / "RECORD").read_text() + "mxnet/extra.py,,\n")
    assert disk.repair(shot, since) == ([], [])


def test_repair_keeps_what_was_there_before_the_install(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "~old_stash").mkdir()  # left by some earlier pip: not this install's to remove
    (site / "orphan").mkdir()  # owned by nobody, but older than the install
    shot = disk.snapshot({"x": Distribution("x", "1", str(site))}, [])
    assert disk.repair(shot, time.time() - 1) == ([], [])
    assert (site / "~old_stash").exists() and (site / "orphan").exists()


# ------------------------------------------------------------------ signals


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_an_armed_step(signum: int) -> None:
    def step() -> str:
        os.kill(os.getpid(), signum)
        time.sleep(5)
        return "finished"

    with Guard() as guard:
        value, error = guarded(guard, step)
    assert value is None and isinstance(error, Interrupted) and error.signum == signum
    assert error.exit_code == 128 + signum


def test_signals_while_disarmed_are_noted_not_raised_and_stop_the_next_step() -> None:
    with Guard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handlers run between bytecodes: still here
        assert guard.noted == [signal.SIGINT, signal.SIGTERM]
        ran: list[bool] = []
        value, error = guarded(guard, lambda: ran.append(True))
    assert ran == [] and isinstance(error, Interrupted) and error.signum == signal.SIGINT


def test_the_previous_handlers_come_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with Guard():
        assert signal.getsignal(signal.SIGTERM) != before
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_log_that_cannot_print_never_raises() -> None:
    def broken(_: str) -> None:
        raise OSError(5, "Input/output error")  # the terminal is gone

    never_raises(broken)("Rolling back")  # no exception


# ------------------------------------------------------------------ pip's output


def test_pip_output_is_shown_escaped_and_captured() -> None:
    shown = io.StringIO()
    run = run_step(sys.executable, ["--version"], shown)
    assert run.ok and run.output.startswith("pip ") and shown.getvalue() == run.output


def test_a_failed_pip_run_names_pips_error() -> None:
    run = run_step(sys.executable, ["install", "--no-index", "no-such-dist"], io.StringIO())
    assert not run.ok
    assert run.error_line() == "No matching distribution found for no-such-dist"


def test_what_pip_prints_reaches_the_terminal_escaped(tmp_path: Path) -> None:
    fake = tmp_path / "python"  # stands in for `python -m pip`: prints a colour escape
    fake.write_text("#!/bin/sh\nprintf 'ERROR: bad \\033[31mred\\n'\nexit 1\n")
    fake.chmod(0o755)
    shown = io.StringIO()
    run = run_step(str(fake), [], shown)
    assert shown.getvalue() == "ERROR: bad \\x1b[31mred\n"
    assert run.error_line() == "bad \x1b[31mred"  # captured as it was; escaped when shown
