"""keras_config: where Keras looks, how it reads the file, and safe edits."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune import keras_config as kc
from kmx_tune.errors import KmxError, UsageError
from tests.conftest import KERAS_JSON
from tests.fs_helpers import fill_disk, tiny_disk, unwritable_dir

MXNET_FIRST = KERAS_JSON / "keras-mxnet-2.2.4.3-first-import.json"
KERAS3_FIRST = KERAS_JSON / "keras-3.15.1-first-import.json"


def _env(**kw: str) -> dict[str, str]:
    env = {"HOME": os.environ["HOME"]}
    env.update(kw)
    return env


# --------------------------------------------------------------------------- locate


def test_locate_default_is_home_dot_keras() -> None:
    loc = kc.locate(env=_env())
    assert loc.path == Path(os.environ["HOME"]) / ".keras" / "keras.json"
    assert loc.source == "~/.keras (default)"
    assert not loc.tmp_fallback and not loc.notes


def test_locate_keras_home_env(tmp_path: Path) -> None:
    loc = kc.locate(env=_env(KERAS_HOME=str(tmp_path / "kh")))
    assert loc.path == tmp_path / "kh" / "keras.json"
    assert loc.source == f"$KERAS_HOME={tmp_path / 'kh'}"


def test_locate_keras_home_tilde_is_expanded() -> None:
    loc = kc.locate(env=_env(KERAS_HOME="~/kh"))
    assert loc.path == Path(os.environ["HOME"]) / "kh" / "keras.json"


def test_locate_flag_beats_env_and_warns_keras_will_not_read_it(tmp_path: Path) -> None:
    loc = kc.locate(tmp_path / "flag", env=_env(KERAS_HOME=str(tmp_path / "env")))
    assert loc.path == tmp_path / "flag" / "keras.json"
    assert loc.source.startswith("--keras-home")
    assert any("only when KERAS_HOME=" in n for n in loc.notes)


def test_locate_flag_matching_env_has_no_note(tmp_path: Path) -> None:
    loc = kc.locate(tmp_path, env=_env(KERAS_HOME=str(tmp_path)))
    assert loc.notes == ()


def test_locate_empty_keras_home_means_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loc = kc.locate(env=_env(KERAS_HOME=""))
    assert loc.path == tmp_path / "keras.json"
    assert "current folder" in loc.notes[0]


def test_locate_falls_back_to_tmp_when_home_not_writable(tmp_path: Path) -> None:
    home = tmp_path / "rohome"
    home.mkdir()
    with unwritable_dir(home):
        loc = kc.locate(env={"HOME": str(home)})
    assert loc.path == Path("/tmp/.keras/keras.json")
    assert loc.tmp_fallback
    assert loc.source == f"/tmp/.keras (home folder {home} not writable)"


def test_locate_keras_home_beats_tmp_fallback(tmp_path: Path) -> None:
    home = tmp_path / "rohome"
    home.mkdir()
    with unwritable_dir(home):
        loc = kc.locate(env={"HOME": str(home), "KERAS_HOME": str(tmp_path / "kh")})
    assert loc.path == tmp_path / "kh" / "keras.json"
    assert not loc.tmp_fallback


def test_locate_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert kc.locate().path == tmp_path / "keras.json"


# --------------------------------------------------------------------------- read


def _loc(tmp_path: Path) -> kc.KerasJsonLocation:
    return kc.locate(tmp_path, env=_env(KERAS_HOME=str(tmp_path)))


def test_read_real_first_import_file(tmp_path: Path) -> None:
    shutil.copy(MXNET_FIRST, tmp_path / "keras.json")
    st = kc.read(_loc(tmp_path), env={})
    assert st.exists and st.error is None and st.kind == "ok"
    assert list(st.values) == ["floatx", "epsilon", "backend", "image_data_format"]
    assert st.values["epsilon"] == 1e-07
    assert st.effective["image_data_format"] == ("channels_last", "keras.json")


def test_read_missing_file(tmp_path: Path) -> None:
    st = kc.read(_loc(tmp_path), env={})
    assert not st.exists and st.values == {} and st.error is None
    assert st.effective["backend"] == ("mxnet", "Keras default (not in keras.json)")


def test_read_reports_keras_backend_override(tmp_path: Path) -> None:
    shutil.copy(KERAS3_FIRST, tmp_path / "keras.json")
    st = kc.read(_loc(tmp_path), env={"KERAS_BACKEND": "mxnet"})
    assert st.backend_override == "mxnet"
    value, source = st.effective["backend"]
    assert value == "mxnet" and "KERAS_BACKEND" in source and "'tensorflow'" in source


def test_read_empty_keras_backend_does_not_override(tmp_path: Path) -> None:
    shutil.copy(KERAS3_FIRST, tmp_path / "keras.json")
    st = kc.read(_loc(tmp_path), env={"KERAS_BACKEND": ""})
    assert st.effective["backend"] == ("tensorflow", "keras.json")


def test_read_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "keras.json").write_text('{\n    "floatx": "float32"\n    "backend": "mxnet"\n}')
    st = kc.read(_loc(tmp_path), env={})
    assert st.kind == "malformed" and st.values == {}
    assert st.error is not None and "line 3 column 5" in st.error
    assert "\n" not in st.error
    assert st.effective["floatx"][1].startswith("Keras default")


def test_read_top_level_not_object(tmp_path: Path) -> None:
    (tmp_path / "keras.json").write_text('["channels_first"]')
    st = kc.read(_loc(tmp_path), env={})
    assert st.kind == "not-object" and st.error is not None and "not an object" in st.error


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("epsilon", "1e-07", "epsilon must be a float"),
        ("epsilon", 1, "epsilon must be a float"),
        ("floatx", "float8", "floatx must be one of"),
        ("backend", 3, "backend must be a non-empty string"),
        ("image_data_format", "NCHW", "channels_first or channels_last"),
    ],
)
def test_read_wrong_value_types(tmp_path: Path, key: str, value: object, words: str) -> None:
    obj = dict(kc.KERAS_DEFAULTS)
    obj[key] = value
    (tmp_path / "keras.json").write_text(json.dumps(obj, indent=4))
    st = kc.read(_loc(tmp_path), env={})
    assert st.kind == "bad-values" and st.bad_keys == (key,)
    assert st.error is not None and words in st.error
    assert st.values[key] == value  # still readable: the values are there


def test_read_directory(tmp_path: Path) -> None:
    (tmp_path / "keras.json").mkdir()
    st = kc.read(_loc(tmp_path), env={})
    assert st.error is not None and "is a directory" in st.error
    assert st.values == {}


def test_read_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "keras.json").write_bytes(b'{"floatx": "\xff"}')
    st = kc.read(_loc(tmp_path), env={})
    assert st.kind == "malformed" and st.error is not None and "UTF-8" in st.error


def test_read_through_symlink(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "keras.json"
    real.parent.mkdir()
    shutil.copy(MXNET_FIRST, real)
    (tmp_path / "kh").mkdir()
    (tmp_path / "kh" / "keras.json").symlink_to(real)
    st = kc.read(_loc(tmp_path / "kh"), env={})
    assert st.error is None and st.values["backend"] == "mxnet"


def test_read_defaults_to_located_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    shutil.copy(MXNET_FIRST, tmp_path / "keras.json")
    st = kc.read()
    assert st.location.path == tmp_path / "keras.json" and st.values["backend"] == "mxnet"


# --------------------------------------------------------------------------- edit


def _kh(tmp_path: Path) -> tuple[kc.KerasJsonLocation, Path]:
    kh = tmp_path / "kh"
    kh.mkdir(exist_ok=True)
    return _loc(kh), kh / "keras.json"


def _first_import_text(fmt: str, fixture: Path = MXNET_FIRST) -> str:
    return fixture.read_text().replace('"channels_last"', f'"{fmt}"')


def test_set_format_creates_missing_file_like_keras(tmp_path: Path) -> None:
    loc = _loc(tmp_path / "new" / "kh")  # the folder does not exist yet either
    res = kc.set_format("channels_first", location=loc, env={})
    assert res.created and res.written and res.backup is None
    # byte for byte what Keras-MXNet writes, with the chosen format
    assert loc.path.read_text() == _first_import_text("channels_first")
    assert stat_mode(loc.path) == 0o666 & ~_umask()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_set_format_edits_real_file_and_keeps_backup(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    res = kc.set_format("channels_first", location=loc, env={})
    assert path.read_text() == _first_import_text("channels_first")
    assert res.backup == path.with_name("keras.json.bak")
    assert res.backup.read_bytes() == MXNET_FIRST.read_bytes()
    assert [(c.key, c.before, c.after) for c in res.changes] == [
        ("image_data_format", "channels_last", "channels_first")
    ]
    # no temporary files are left behind; the lock is hidden
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".keras.json.lock",
        "keras.json",
        "keras.json.bak",
    ]


def test_set_format_sets_backend_mxnet_unless_keep(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(KERAS3_FIRST, path)
    kc.set_format("channels_first", None, location=loc, env={})
    assert json.loads(path.read_text())["backend"] == "tensorflow"
    res = kc.set_format("channels_first", location=loc, env={})
    assert [(c.key, c.after) for c in res.changes] == [("backend", "mxnet")]


def test_set_format_keeps_other_keys_values_and_order(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    # a hand-edited file: odd order, extra keys, 2-space indent, trailing newline
    path.write_text(
        '{\n  "image_data_format": "channels_last",\n  "my_key": [1, 2.5, null],\n'
        '  "epsilon": 1e-07,\n  "nested": {"b": 1, "a": "\\u00e9"},\n  "floatx": "float16"\n}\n'
    )
    kc.set_format("channels_first", None, location=loc, env={})
    text = path.read_text()
    assert text == json.dumps(
        {
            "image_data_format": "channels_first",
            "my_key": [1, 2.5, None],
            "epsilon": 1e-07,
            "nested": {"b": 1, "a": "é"},
            "floatx": "float16",
        },
        indent=4,
    )
    assert not text.endswith("\n") and '\n    "my_key": [\n' in text


def test_unchanged_writes_nothing(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text(_first_import_text("channels_first"))
    before = path.stat()
    res = kc.set_format("channels_first", location=loc, env={})
    assert not res.changed and not res.written and res.changes == ()
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(p.name for p in path.parent.iterdir()) == ["keras.json"]


def test_channels_last_reverts(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    kc.set_format("channels_first", location=loc, env={})
    kc.set_format("channels_last", location=loc, env={})
    assert path.read_bytes() == MXNET_FIRST.read_bytes()


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    loc = _loc(tmp_path / "absent")
    res = kc.set_format("channels_first", location=loc, env={}, dry_run=True)
    assert res.dry_run and res.changed and not res.written
    assert kc.dumps(res.after) == _first_import_text("channels_first")
    assert not (tmp_path / "absent").exists()


def test_mode_is_kept(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    path.chmod(0o640)
    kc.set_format("channels_first", location=loc, env={})
    assert stat_mode(path) == 0o640
    assert stat_mode(path.with_name("keras.json.bak")) == 0o640


def test_symlink_target_is_edited_and_link_kept(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "keras.json"
    real.parent.mkdir()
    shutil.copy(MXNET_FIRST, real)
    loc, link = _kh(tmp_path)
    link.symlink_to(real)
    res = kc.set_format("channels_first", location=loc, env={})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == _first_import_text("channels_first")
    assert res.path == real and res.backup == real.with_name("keras.json.bak")
    assert any("symlink" in w for w in res.warnings)


def test_keras_backend_override_is_warned(tmp_path: Path) -> None:
    loc, _ = _kh(tmp_path)
    res = kc.set_format("channels_first", location=loc, env={"KERAS_BACKEND": "tensorflow"})
    assert any("KERAS_BACKEND=tensorflow" in w for w in res.warnings)


def test_update_rejects_values_keras_would_reject(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    with pytest.raises(UsageError, match="epsilon must be a float"):
        kc.update({"epsilon": 1}, loc, env={})
    assert not path.exists()


# ---- bad files: a clear one-line error, the file byte-identical, no backup written

BAD_FILES = {
    "malformed": (b'{\n    "floatx": "float32",\n    "backend": mxnet\n}', "line 3 column 16"),
    "not-object": (b'["channels_first"]', "not an object"),
    "wrong-type": (b'{\n    "epsilon": "1e-07",\n    "backend": "mxnet"\n}', "epsilon must be"),
    "not-utf8": (b'{"backend": "\xff"}', "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_and_left_alone(tmp_path: Path, case: str) -> None:
    data, words = BAD_FILES[case]
    loc, path = _kh(tmp_path)
    path.write_bytes(data)
    with pytest.raises(UsageError) as info:
        kc.set_format("channels_first", location=loc, env={})
    msg = str(info.value)
    assert words in msg and "--force" in msg and "\n" not in msg
    assert path.read_bytes() == data
    assert not path.with_name("keras.json.bak").exists()


@pytest.mark.parametrize("case", ["malformed", "not-object", "not-utf8"])
def test_force_replaces_unreadable_content_after_backup(tmp_path: Path, case: str) -> None:
    data, _ = BAD_FILES[case]
    loc, path = _kh(tmp_path)
    path.write_bytes(data)
    res = kc.set_format("channels_first", location=loc, env={}, force=True)
    # a forced replacement keeps the old file under a number no later run reuses
    assert res.backup == path.with_name("keras.json.bak.1")
    assert res.backup.read_bytes() == data
    assert path.read_text() == _first_import_text("channels_first")
    assert res.before is None and any("--force" in w for w in res.warnings)


def test_force_resets_only_bad_values(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.write_text('{"epsilon": 1, "floatx": "float64", "mine": true}')
    kc.set_format("channels_first", location=loc, env={}, force=True)
    assert json.loads(path.read_text()) == {
        "epsilon": 1e-07,
        "floatx": "float64",
        "mine": True,
        "image_data_format": "channels_first",
        "backend": "mxnet",
    }


def test_bad_value_the_edit_replaces_needs_no_force(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    path.write_text(path.read_text().replace("channels_last", "NCHW"))
    kc.set_format("channels_first", location=loc, env={})
    assert path.read_text() == _first_import_text("channels_first")


def test_directory_is_refused(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    path.mkdir()
    (path / "inside").write_text("x")
    with pytest.raises(KmxError, match="is a directory"):
        kc.set_format("channels_first", location=loc, env={}, force=True)
    assert (path / "inside").read_text() == "x"
    assert sorted(p.name for p in path.parent.iterdir()) == ["keras.json"]


def test_unwritable_folder(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    with unwritable_dir(path.parent), pytest.raises(KmxError) as info:
        kc.set_format("channels_first", location=loc, env={})
    msg = str(info.value)
    assert "cannot write in" in msg and "was not changed" in msg and "\n" not in msg
    assert path.read_bytes() == MXNET_FIRST.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir()) == ["keras.json"]


def test_unwritable_folder_missing_file(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    with unwritable_dir(path.parent), pytest.raises(KmxError, match="nothing was written"):
        kc.set_format("channels_first", location=loc, env={})
    assert not path.exists()


def test_full_disk(tmp_path: Path) -> None:
    with tiny_disk(tmp_path / "disk") as disk:
        loc = _loc(disk)
        path = disk / "keras.json"
        shutil.copy(MXNET_FIRST, path)
        fill_disk(disk)
        with pytest.raises(KmxError) as info:
            kc.set_format("channels_first", location=loc, env={})
        msg = str(info.value)
        assert "no space left" in msg and "was not changed" in msg and "\n" not in msg
        assert path.read_bytes() == MXNET_FIRST.read_bytes()
        left = {p.name for p in disk.iterdir()} - {"filler", "filler2"}
        assert left <= {"keras.json", ".keras.json.lock"}  # no temporary or half backup


# ---- concurrency: real processes

_WORKER = """
import sys
from pathlib import Path
from kmx_tune import keras_config as kc
loc = kc.locate(sys.argv[1], env={})
for j in range(int(sys.argv[3])):
    kc.update({"%s_%d" % (sys.argv[2], j): j}, loc, env={})
"""

_READER = """
import json, sys, os
from pathlib import Path
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
reads = torn = 0
while not stop.exists():
    try:
        text = path.read_text()
    except FileNotFoundError:
        continue
    reads += 1
    try:
        json.loads(text)
    except ValueError:
        torn += 1
print(reads, torn)
"""


def test_concurrent_edits_serialize_and_never_tear(tmp_path: Path) -> None:
    loc, path = _kh(tmp_path)
    shutil.copy(MXNET_FIRST, path)
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    writers, per = 4, 15
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(path.parent), f"w{i}", str(per)])
        for i in range(writers)
    ]
    try:
        assert [p.wait(timeout=120) for p in procs] == [0] * writers
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    values = json.loads(path.read_text())
    # nobody lost anybody's change: every key of every writer is there
    assert {f"w{i}_{j}" for i in range(writers) for j in range(per)} <= set(values)
    assert list(values)[:4] == ["floatx", "epsilon", "backend", "image_data_format"]
    reads, torn = map(int, out.split())
    assert reads > 0 and torn == 0


# ---- found in review: an empty keras.json, KERAS_HOME naming a file


@pytest.mark.parametrize("data", [b"", b"  \n"])
def test_empty_file_is_filled_without_force(tmp_path: Path, data: bytes) -> None:
    # Keras reads an empty keras.json as {} (its defaults); there is nothing to lose
    loc, path = _kh(tmp_path)
    path.write_bytes(data)
    st = kc.read(loc, env={})
    assert st.error is not None and "empty" in st.error
    res = kc.set_format("channels_first", location=loc, env={})
    assert res.written and path.read_text() == _first_import_text("channels_first")
    assert any("empty" in w for w in res.warnings)


def test_keras_home_naming_a_file_says_to_name_a_folder(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("precious")
    for loc in (
        kc.locate(env=_env(KERAS_HOME=str(afile))),
        kc.locate(afile / "sub", env=_env()),
    ):
        st = kc.read(loc, env={})
        assert st.error is not None and f"{afile} is a file, not a folder" in st.error
        with pytest.raises(KmxError) as info:
            kc.set_format("channels_first", location=loc, env={})
        assert "folder" in str(info.value)
    assert afile.read_text() == "precious"
