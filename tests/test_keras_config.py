"""keras_config: where Keras looks, how it reads the file, and safe edits."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kmx_tune import keras_config as kc
from tests.conftest import KERAS_JSON
from tests.fs_helpers import unwritable_dir

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
    assert loc.from_flag
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
    import json

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
