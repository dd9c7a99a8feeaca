"""keras.json under attack: the adversarial review's findings (C3, B1, D7, S1, S2/S4, B9)
and the lock file left in sight (issue 15, item 7). Each test reproduces a finding with a
real file (or FIFO, device link, symlink loop, planted link, killed process)."""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune import keras_config as kc
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.fsio import TEMP_MARK
from tests.cli import kmx
from tests.conftest import KERAS_JSON
from tests.hwfakes import profile_path

MXNET_FIRST = KERAS_JSON / "keras-mxnet-2.2.4.3-first-import.json"
NO_GPU = str(profile_path("epyc-no-gpu"))
OTHER_UID = 54321  # a user that owns nothing here: tests run as root and chown to it

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _kh(tmp_path: Path) -> tuple[kc.KerasJsonLocation, Path]:
    kh = tmp_path / "kh"
    kh.mkdir(exist_ok=True)
    return kc.locate(kh, env={"KERAS_HOME": str(kh)}), kh / "keras.json"


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def _one_error_line(err: str) -> str:
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    return err


def _limit_memory() -> None:
    # what reads without a bound must fail in the child, never take the machine's memory
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def _cli(*args: str, kh: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """A real kmx-tune process, bounded in time and memory: what hangs or reads
    forever must do it in a child, not in the test."""
    env = dict(os.environ, KERAS_HOME=str(kh))
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )


def _doctor_keras_json(kh: Path) -> dict[str, object]:
    """doctor's keras.json finding, as --json gives it."""
    result = kmx(
        "doctor",
        "--python",
        sys.executable,
        "--hardware",
        NO_GPU,
        "--json",
        env={"KERAS_HOME": str(kh)},
    )
    data = json.loads(result.stdout)
    (finding,) = [f for f in data["findings"] if f["id"] == "keras.json"]
    return dict(finding)


# ---------------------------------------------------------------- C3: hostile content

DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = '{"backend": "mxnet", "n": ' + "9" * 5000 + "}"


@pytest.mark.parametrize(
    ("text", "words"),
    [(DEEP, "nested too deeply"), (HUGE_INT, "more than 4300 digits")],
    ids=["nesting-100000", "integer-5000-digits"],
)
def test_hostile_content_is_one_error_in_config_set_format_and_doctor(
    tmp_path: Path, text: str, words: str
) -> None:
    loc, path = _kh(tmp_path)
    path.write_text(text)
    state = kc.read(loc, env={})  # never raises
    assert state.error is not None and words in state.error and "\n" not in state.error

    config = kmx("config", env={"KERAS_HOME": str(path.parent)})
    assert config.exit_code == 1 and words in config.stdout

    refused = kmx("set-format", "channels_first", env={"KERAS_HOME": str(path.parent)})
    assert refused.exit_code == 2 and words in _one_error_line(refused.stderr)
    assert path.read_text() == text

    finding = _doctor_keras_json(path.parent)
    assert finding["status"] == "fail" and words in str(finding["title"])
    assert finding["fix"] == "kmx-tune set-format channels_first --force"
    # and the fix doctor prints works
    forced = kmx("set-format", "channels_first", "--force", env={"KERAS_HOME": str(path.parent)})
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(path.read_text())["image_data_format"] == "channels_first"
    assert path.with_name("keras.json.bak.1").read_text() == text


def test_symlink_loop_is_one_error_and_doctor_fix_works(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.symlink_to("keras.json")  # keras.json -> keras.json
    state = kc.read(loc, env={})
    assert state.error is not None and "symlink" in state.error

    config = kmx("config", env={"KERAS_HOME": str(path.parent)})
    assert config.exit_code == 1 and "symlink" in config.stdout

    for args in (("channels_first",), ("channels_first", "--force")):
        refused = kmx("set-format", *args, env={"KERAS_HOME": str(path.parent)})
        assert refused.exit_code == 1 and "symlink" in _one_error_line(refused.stderr)
    assert path.is_symlink()

    fix = str(_doctor_keras_json(path.parent)["fix"])
    assert fix == f"mv {path} {path}.broken && kmx-tune set-format channels_first"
    mv, run = fix.split(" && ")
    subprocess.run(shlex.split(mv), check=True, timeout=30)
    done = _cli(*shlex.split(run)[1:], kh=path.parent)
    assert done.returncode == 0, done.stderr
    assert json.loads(path.read_text())["image_data_format"] == "channels_first"


def test_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    _, path = _kh(tmp_path)
    path.symlink_to("/dev/zero")
    shown = _cli("config", kh=path.parent, timeout=30)
    assert shown.returncode == 1 and "character device" in shown.stdout
    refused = _cli("set-format", "channels_first", "--force", kh=path.parent, timeout=30)
    assert refused.returncode == 1 and "character device" in _one_error_line(refused.stderr)
    assert path.is_symlink() and os.readlink(path) == "/dev/zero"


def test_a_file_over_the_bound_is_refused_by_its_size(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text('{"pad": "' + "x" * kc.MAX_BYTES + '"}')
    state = kc.read(loc, env={})
    assert state.error is not None and "more than the 1 MiB" in state.error
    assert state.kind == "unreadable"


def test_a_file_under_the_bound_is_read(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text('{"pad": "' + "x" * (kc.MAX_BYTES - 100) + '"}')
    assert kc.read(loc, env={}).kind == "ok"


# ---------------------------------------------------------------- B1: FIFOs never hang


def test_a_fifo_keras_json_never_hangs(tmp_path: Path) -> None:
    _, path = _kh(tmp_path)
    os.mkfifo(path)
    commands = [
        ("config",),
        ("set-format", "channels_first"),
        ("set-format", "--force", "channels_first"),
        ("doctor", "--python", sys.executable, "--hardware", NO_GPU),
    ]
    for args in commands:
        done = _cli(*args, kh=path.parent, timeout=30)  # a hang fails here, by timeout
        assert done.returncode == 1, (args, done.stderr)
        assert "FIFO" in done.stdout + done.stderr
        assert "Traceback" not in done.stderr
    assert path.exists() and not path.is_file()


# ---------------------------------------------------------------- D7: --force keeps keys


TRAILING = '{"backend": "mxnet", "image_data_format": "channels_last", "my_setting": "precious", }'


def test_force_on_a_trailing_comma_keeps_the_users_keys(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text(TRAILING)
    res = kc.set_format("channels_first", location=loc, env={}, force=True)
    values = json.loads(path.read_text())
    assert values["my_setting"] == "precious"
    assert values["image_data_format"] == "channels_first" and values["backend"] == "mxnet"
    assert values["floatx"] == "float32" and values["epsilon"] == 1e-07
    (warning,) = [w for w in res.warnings if "--force" in w]
    assert "kept its keys backend, image_data_format, my_setting" in warning
    # the change is shown as a change, not as every key added
    assert [c.key for c in res.changes if not c.added] == ["image_data_format"]


def test_force_names_what_it_could_not_keep(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text('{"mine": 1, "backend": "mxnet"\n "x": [1, 2,, "lost": 3}')
    res = kc.set_format("channels_first", location=loc, env={}, force=True)
    values = json.loads(path.read_text())
    assert values["mine"] == 1 and "lost" not in values
    (warning,) = [w for w in res.warnings if "--force" in w]
    assert "kept its keys mine, backend" in warning
    assert "dropped what it could not read from line 2 column 2" in warning
    assert str(res.backup) in warning


def test_refusal_says_which_keys_force_would_keep(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text(TRAILING)
    with pytest.raises(UsageError) as info:
        kc.set_format("channels_first", location=loc, env={})
    msg = str(info.value)
    assert "keeping the 3 keys it can read (backend, image_data_format, my_setting)" in msg
    assert "keras.json.bak.1" in msg
    assert path.read_text() == TRAILING


def test_a_forced_backup_is_never_overwritten(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    kh = {"KERAS_HOME": str(path.parent)}
    path.write_text(TRAILING)
    assert kmx("set-format", "channels_first", "--force", env=kh).exit_code == 0
    # the review's repro: the very next run used to overwrite the only copy
    assert kmx("set-format", "channels_last", env=kh).exit_code == 0
    assert kmx("set-format", "channels_first", env=kh).exit_code == 0
    path.write_text("{broken")
    again = kmx("set-format", "channels_first", "--force", env=kh)
    assert again.exit_code == 0 and "keras.json.bak.2" in again.stdout
    assert path.with_name("keras.json.bak.1").read_text() == TRAILING
    assert path.with_name("keras.json.bak.2").read_text() == "{broken"
    assert "precious" in path.with_name("keras.json.bak.1").read_text()
    # a planted name is skipped, never replaced
    (path.parent / "keras.json.bak.3").symlink_to(tmp_path / "victim")
    path.write_text("[]")
    kc.set_format("channels_first", location=loc, env={}, force=True)
    assert not (tmp_path / "victim").exists()
    assert path.with_name("keras.json.bak.4").read_text() == "[]"


# ---------------------------------------------------------------- S1: links in shared folders


def test_a_planted_lock_link_is_never_followed(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    victim = tmp_path / "newly_created_by_lock"
    kc.lock_path(path).symlink_to(victim)
    with pytest.raises(KmxError) as info:
        kc.set_format("channels_first", location=loc, env={})
    assert "symlink" in str(info.value) and "\n" not in str(info.value)
    assert not victim.exists()
    assert path.read_bytes() == MXNET_FIRST.read_bytes()


def test_a_planted_link_at_the_old_lock_name_is_never_followed(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    victim = tmp_path / "victim"
    (path.parent / "keras.json.lock").symlink_to(victim)
    kc.set_format("channels_first", location=loc, env={})
    assert not victim.exists()


@needs_root
def test_a_symlinked_keras_json_in_another_users_folder_is_refused(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    outside = tmp_path / "victim" / "deep" / "keras.json"
    path.symlink_to(outside)
    os.chown(path.parent, OTHER_UID, OTHER_UID)
    with pytest.raises(KmxError) as info:
        kc.set_format("channels_first", location=loc, env={})
    msg = str(info.value)
    assert "symlink" in msg and f"uid {OTHER_UID}" in msg and "KERAS_HOME" in msg
    assert not (tmp_path / "victim").exists()  # no folders made through the link


@needs_root
def test_shared_tmp_fallback_folder_planted_as_a_link_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (shared / ".keras").symlink_to(elsewhere)
    os.lchown(shared / ".keras", OTHER_UID, OTHER_UID)
    loc = kc.KerasJsonLocation(
        shared / ".keras" / "keras.json", "/tmp/.keras (test)", shared / ".keras", True
    )
    with pytest.raises(KmxError) as info:
        kc.set_format("channels_first", location=loc, env={})
    assert "symlink" in str(info.value) and "KERAS_HOME" in str(info.value)
    assert not elsewhere.exists()


@needs_root
def test_a_plain_file_in_a_folder_of_another_user_is_still_edited(tmp_path: Path) -> None:
    # a team's shared KERAS_HOME: only links are refused there, not the file itself
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    os.chown(path.parent, OTHER_UID, OTHER_UID)
    kc.set_format("channels_first", location=loc, env={})
    assert json.loads(path.read_text())["image_data_format"] == "channels_first"


def test_a_symlinked_keras_json_in_the_users_own_folder_is_still_followed(
    tmp_path: Path,
) -> None:
    loc, path = _kh(tmp_path)
    real = tmp_path / "dotfiles" / "keras.json"
    real.parent.mkdir()
    shutil.copy(MXNET_FIRST, real)
    path.symlink_to(real)
    kc.set_format("channels_first", location=loc, env={})
    assert path.is_symlink()
    assert json.loads(real.read_text())["image_data_format"] == "channels_first"


# ---------------------------------------------------------------- issue 15 item 7: the lock


def test_no_lock_file_is_left_in_sight(tmp_path: Path) -> None:
    _, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    assert kmx("set-format", "channels_first", env={"KERAS_HOME": str(path.parent)}).exit_code == 0
    assert _visible(path.parent) == {"keras.json", "keras.json.bak"}


def test_a_lock_file_left_by_an_older_version_is_removed(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    (path.parent / "keras.json.lock").write_bytes(b"")
    kc.set_format("channels_first", location=loc, env={})
    assert _visible(path.parent) == {"keras.json", "keras.json.bak"}


# ---------------------------------------------------------------- S2/S4: printed as text


def test_markup_in_values_and_keys_is_printed_as_text(tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    kh.mkdir()
    (kh / "keras.json").write_text(
        json.dumps({"backend": "[/x]", "image_data_format": "channels_first", "[red]k": 1})
    )
    env = {"KERAS_HOME": str(kh)}
    same = kmx("set-format", "channels_first", "--backend", "keep", env=env)
    assert same.exit_code == 0 and '"[/x]"' in same.stdout
    shown = kmx("config", env=env)
    assert "[red]k" in shown.stdout and '"[/x]"' in shown.stdout


def test_control_characters_in_a_symlink_target_are_escaped(tmp_path: Path) -> None:
    kh = tmp_path / "kh"
    kh.mkdir()
    target = tmp_path / "t\x1b]0;PWNED\x07.json"
    shutil.copy(MXNET_FIRST, target)
    (kh / "keras.json").symlink_to(target)
    shown = kmx("config", env={"KERAS_HOME": str(kh)})
    assert shown.exit_code == 0 and "\x1b" not in shown.stdout and "\\x1b" in shown.stdout


# ---------------------------------------------------------------- B9: leftovers of kill -9


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_temp_files_of_a_killed_run(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    pid = _dead_pid()
    left = [
        path.with_name(f".keras.json{TEMP_MARK}{pid}-0badc0de"),
        path.with_name(f".keras.json.bak{TEMP_MARK}{pid}-0badc0de"),
    ]
    for p in left:
        p.write_text("{half")
    # even a run that has nothing to change cleans up
    res = kc.set_format("channels_last", location=loc, env={})
    assert not res.written
    assert [p for p in left if p.exists()] == []


_KILLED_IN_WRITE = """
import os, sys, time
from kmx_tune import keras_config as kc
real_fsync = os.fsync
def fsync(fd):
    # stop for good once the temporary file named in argv[2] is complete
    if os.path.basename(os.readlink("/proc/self/fd/%d" % fd)).startswith(sys.argv[2]):
        print("in-write", flush=True)
        time.sleep(600)
    real_fsync(fd)
os.fsync = fsync
kc.set_format("channels_first", location=kc.locate(sys.argv[1], env={}), env={}, force=True)
"""


@pytest.mark.kill
@pytest.mark.parametrize("temp", [".keras.json.bak.kmx-tmp-", ".keras.json.kmx-tmp-"],
                         ids=["during-backup", "during-write"])  # fmt: skip
def test_kill_9_mid_write_leaves_only_what_the_next_run_cleans(tmp_path: Path, temp: str) -> None:
    """A real process, killed by SIGKILL while its backup or its new keras.json is a
    complete temporary file not yet renamed: the file stays whole, and the next run
    removes the leftovers."""
    assert TEMP_MARK == ".kmx-tmp-"
    loc, path = _kh(tmp_path)
    path.write_text(TRAILING)
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_IN_WRITE, str(path.parent), temp],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "in-write\n"
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    temps = [p for p in path.parent.iterdir() if TEMP_MARK in p.name]
    assert temps, "the kill came after the rename: nothing to clean"
    assert path.read_text() == TRAILING  # never half-written
    kc.set_format("channels_first", location=loc, env={}, force=True)
    assert [p for p in path.parent.iterdir() if TEMP_MARK in p.name] == []
    assert json.loads(path.read_text())["my_setting"] == "precious"


# ---------------------------------------------------------------- doctor --deep, real Keras


@pytest.fixture(scope="module")
def keras_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.8 venv with keras-mxnet, mxnet and numpy (never changed by the tests)."""
    from tests.venvs import make_venv, pyenv_python

    requirements = ["keras-mxnet==2.2.4.3", "mxnet==1.9.1", "numpy==1.23.5"]
    venv = tmp_path_factory.mktemp("keras-venv") / "venv"
    return make_venv(venv, requirements, pyenv_python("3.8"))


@pytest.mark.venv
def test_doctor_deep_with_a_fifo_keras_json_answers_at_once(
    keras_python: Path, tmp_path: Path
) -> None:
    """`import keras` in the target would block on the FIFO (doctor used to wait for the
    target's 120 s timeout, then blame the interpreter): the import is checked with a
    scratch keras.json, and the FIFO is the keras.json finding."""
    _, path = _kh(tmp_path)
    os.mkfifo(path)
    args = ("doctor", "--deep", "--json", "--python", str(keras_python), "--hardware", NO_GPU)
    done = _cli(*args, kh=path.parent, timeout=100)
    findings = {f["id"]: f for f in json.loads(done.stdout)["findings"]}
    assert findings["keras.json"]["status"] == "fail" and "FIFO" in findings["keras.json"]["title"]
    assert findings["keras.import"]["status"] == "ok"
    assert stat_is_fifo(path)


def stat_is_fifo(path: Path) -> bool:
    import stat

    return stat.S_ISFIFO(os.lstat(path).st_mode)
