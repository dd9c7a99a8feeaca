"""Find keras.json the way Keras-MXNet does, read it, and edit it safely.

This module is the one place in kmx-tune that knows where Keras looks: ``doctor``,
``config`` and ``set-format`` all go through :func:`locate` and :func:`read`.

Where Keras-MXNet 2.2.4.x looks (``keras/backend/__init__.py`` of
awslabs/keras-apache-mxnet; read from the yashsaboo/keras-apache-mxnet fork)::

    if 'KERAS_HOME' in os.environ:
        _keras_dir = os.environ.get('KERAS_HOME')
    else:
        _keras_base_dir = os.path.expanduser('~')
        if not os.access(_keras_base_dir, os.W_OK):
            _keras_base_dir = '/tmp'
        _keras_dir = os.path.join(_keras_base_dir, '.keras')
    _config_path = os.path.expanduser(os.path.join(_keras_dir, 'keras.json'))
    ...
        except ValueError:          # invalid JSON is read as {}
            _config = {}
        assert _floatx in {'float16', 'float32', 'float64'}
        assert isinstance(_epsilon, float)
        assert _image_data_format in {'channels_last', 'channels_first'}
    ...
    f.write(json.dumps(_config, indent=4))   # only when the file is missing
    ...
    if 'KERAS_BACKEND' in os.environ:        # a non-empty value beats the file
        _backend = os.environ['KERAS_BACKEND']
        if _backend:
            _BACKEND = _backend

So: KERAS_HOME (even when empty) wins; the /tmp fallback applies only without it and
depends on the *home folder* being writable, not ~/.keras; a top-level value that is not
an object, or a value of the wrong type, makes ``import keras`` fail.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILENAME = "keras.json"
TMP_FALLBACK_BASE = "/tmp"  # hard-coded in Keras, not tempfile.gettempdir()

# What Keras-MXNet writes on first import into an empty KERAS_HOME, in its order
# (tests/fixtures/keras-json/keras-mxnet-2.2.4.3-first-import.json).
KERAS_DEFAULTS: dict[str, Any] = {
    "floatx": "float32",
    "epsilon": 1e-07,
    "backend": "mxnet",
    "image_data_format": "channels_last",
}
FLOATX_VALUES = ("float16", "float32", "float64")
FORMATS = ("channels_first", "channels_last")


# --------------------------------------------------------------------------- locate


@dataclass(frozen=True)
class KerasJsonLocation:
    """The keras.json Keras will read, and why that one."""

    path: Path  # the keras.json Keras will read
    source: str  # e.g. "$KERAS_HOME=/x", "~/.keras (default)", "/tmp/.keras (home ...)"
    keras_dir: Path = field(default=Path())  # the folder Keras uses (path.parent)
    from_flag: bool = False  # chosen by --keras-home rather than the environment
    tmp_fallback: bool = False  # Keras fell back to /tmp/.keras
    notes: tuple[str, ...] = ()  # extra explanations for the user


def _home(env: Mapping[str, str]) -> str:
    """``os.path.expanduser('~')`` for the given environment (HOME, else the passwd entry)."""
    home = env.get("HOME")
    if home:
        return home
    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # uid without a passwd entry: expanduser leaves '~' as is
        return "~"


def _expanduser(path: str, env: Mapping[str, str]) -> str:
    if path == "~" or path.startswith("~/"):
        return _home(env) + path[1:]
    return os.path.expanduser(path)


def locate(
    keras_home: str | Path | None = None, env: Mapping[str, str] | None = None
) -> KerasJsonLocation:
    """Where Keras-MXNet reads keras.json: ``keras_home`` (the --keras-home flag) beats
    $KERAS_HOME beats ~/.keras, which becomes /tmp/.keras when the home folder is not
    writable. ``env`` defaults to os.environ. Never raises."""
    env = os.environ if env is None else env
    notes: list[str] = []
    env_home = env.get("KERAS_HOME")
    if keras_home is not None:
        keras_dir = _expanduser(str(keras_home), env)
        source = f"--keras-home {keras_home}"
        if env_home is None:
            notes.append(
                f"Keras reads this file only when KERAS_HOME={keras_home} is set; "
                "KERAS_HOME is unset now, so Keras reads ~/.keras/keras.json"
            )
        elif os.path.abspath(_expanduser(env_home, env)) != os.path.abspath(keras_dir):
            notes.append(
                f"Keras reads this file only when KERAS_HOME={keras_home} is set; "
                f"now $KERAS_HOME={env_home}"
            )
        path = Path(os.path.abspath(os.path.join(keras_dir, FILENAME)))
        return KerasJsonLocation(path, source, path.parent, True, False, tuple(notes))
    if env_home is not None:
        # Keras takes KERAS_HOME as is, even empty (then keras.json in the current folder)
        source = f"$KERAS_HOME={env_home}"
        if not env_home:
            notes.append(
                "KERAS_HOME is set but empty: Keras reads keras.json in the current folder"
            )
        elif not os.path.isabs(_expanduser(env_home, env)):
            notes.append("KERAS_HOME is relative: Keras resolves it against the current folder")
        keras_dir = _expanduser(env_home, env)
        path = Path(os.path.abspath(os.path.join(keras_dir, FILENAME)))
        return KerasJsonLocation(path, source, path.parent, False, False, tuple(notes))
    home = _home(env)
    if os.access(home, os.W_OK):
        path = Path(os.path.abspath(os.path.join(home, ".keras", FILENAME)))
        return KerasJsonLocation(path, "~/.keras (default)", path.parent)
    path = Path(TMP_FALLBACK_BASE, ".keras", FILENAME)
    notes.append(
        f"Keras falls back to {TMP_FALLBACK_BASE}/.keras because the home folder {home} is "
        f"not writable; set KERAS_HOME to keep the config somewhere permanent"
    )
    return KerasJsonLocation(
        path,
        f"{TMP_FALLBACK_BASE}/.keras (home folder {home} not writable)",
        path.parent,
        False,
        True,
        tuple(notes),
    )


# --------------------------------------------------------------------------- read


@dataclass(frozen=True)
class KerasJsonState:
    """keras.json as Keras would see it. ``read`` never raises for bad content."""

    location: KerasJsonLocation
    exists: bool
    values: dict[str, Any]  # parsed object; {} when missing or unreadable
    error: str | None  # one-line problem, None if fine
    backend_override: str | None  # value of KERAS_BACKEND in env, if set
    text: str | None = None  # the file's text as read, None when it could not be read
    kind: str = "ok"  # ok | missing | malformed | not-object | bad-values | unreadable
    bad_keys: tuple[str, ...] = ()  # keys whose value Keras rejects

    @property
    def effective(self) -> dict[str, tuple[Any, str]]:
        """What Keras will use for each setting, and where it comes from."""
        return effective_values(self)


def validate(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, problem) for each value Keras-MXNet would reject on import."""
    problems: list[tuple[str, str]] = []
    if "floatx" in values and values["floatx"] not in FLOATX_VALUES:
        problems.append(
            (
                "floatx",
                f"floatx must be one of {', '.join(FLOATX_VALUES)}, got {values['floatx']!r}",
            )
        )
    if "epsilon" in values and not isinstance(values["epsilon"], float):
        problems.append(
            (
                "epsilon",
                f"epsilon must be a float such as 1e-07, got {values['epsilon']!r} "
                f"({type(values['epsilon']).__name__})",
            )
        )
    if "backend" in values and (not isinstance(values["backend"], str) or not values["backend"]):
        problems.append(
            (
                "backend",
                f"backend must be a non-empty string such as 'mxnet', got {values['backend']!r}",
            )
        )
    if "image_data_format" in values and values["image_data_format"] not in FORMATS:
        problems.append(
            (
                "image_data_format",
                "image_data_format must be channels_first or channels_last, "
                f"got {values['image_data_format']!r}",
            )
        )
    return problems


def _json_error(exc: json.JSONDecodeError) -> str:
    return f"{exc.msg} at line {exc.lineno} column {exc.colno}"


def parse(text: str, location: KerasJsonLocation, backend_override: str | None) -> KerasJsonState:
    """Judge keras.json text the way Keras would read it."""
    where = str(location.path)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return KerasJsonState(
            location,
            True,
            {},
            f"{where} is not valid JSON: {_json_error(exc)} "
            "(Keras ignores it and uses its defaults)",
            backend_override,
            text,
            "malformed",
        )
    if not isinstance(obj, dict):
        return KerasJsonState(
            location,
            True,
            {},
            f"{where} holds a JSON {type(obj).__name__}, not an object (import keras fails on it)",
            backend_override,
            text,
            "not-object",
        )
    problems = validate(obj)
    if problems:
        return KerasJsonState(
            location,
            True,
            obj,
            f"{where}: " + "; ".join(p for _, p in problems) + " (import keras fails on it)",
            backend_override,
            text,
            "bad-values",
            tuple(k for k, _ in problems),
        )
    return KerasJsonState(location, True, obj, None, backend_override, text, "ok")


def read(
    location: KerasJsonLocation | None = None, env: Mapping[str, str] | None = None
) -> KerasJsonState:
    """Read keras.json at ``location`` (default: :func:`locate`). Never raises for bad
    content or unreadable files: the problem is in ``error``."""
    env = os.environ if env is None else env
    location = locate(env=env) if location is None else location
    override = env.get("KERAS_BACKEND")
    path = location.path
    if path.is_dir():
        return KerasJsonState(
            location,
            True,
            {},
            f"{path} is a directory, not a file (import keras fails on it); move it away",
            override,
            None,
            "unreadable",
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        # also a dangling symlink: Keras creates its target on first import
        return KerasJsonState(location, False, {}, None, override, None, "missing")
    except OSError as exc:
        return KerasJsonState(
            location,
            True,
            {},
            f"cannot read {path}: {exc.strerror or exc}",
            override,
            None,
            "unreadable",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return KerasJsonState(
            location,
            True,
            {},
            f"{path} is not UTF-8 text (byte {exc.start}); Keras ignores it and uses its defaults",
            override,
            None,
            "malformed",
        )
    return parse(text, location, override)


def effective_values(state: KerasJsonState) -> dict[str, tuple[Any, str]]:
    """Each Keras setting -> (value Keras uses, where it comes from)."""
    out: dict[str, tuple[Any, str]] = {}
    for key, default in KERAS_DEFAULTS.items():
        if key in state.values and state.kind in ("ok", "bad-values"):
            out[key] = (state.values[key], "keras.json")
        elif state.kind == "malformed":
            out[key] = (default, "Keras default (keras.json is not valid JSON)")
        else:
            out[key] = (default, "Keras default (not in keras.json)")
    if state.backend_override:
        file_value = out["backend"][0]
        out["backend"] = (
            state.backend_override,
            f"$KERAS_BACKEND (overrides {out['backend'][1]} value {file_value!r})",
        )
    return out
