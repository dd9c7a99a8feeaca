"""Where Keras-MXNet looks for keras.json (see the package docstring)."""

from __future__ import annotations

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

# How long a run waits for another kmx-tune holding the lock before giving up.
LOCK_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- locate


@dataclass(frozen=True)
class KerasJsonLocation:
    """The keras.json Keras will read, and why that one."""

    path: Path  # the keras.json Keras will read
    source: str  # e.g. "$KERAS_HOME=/x", "~/.keras (default)", "/tmp/.keras (home ...)"
    keras_dir: Path = field(default=Path())  # the folder Keras uses (path.parent)
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
        return KerasJsonLocation(path, source, path.parent, notes=tuple(notes))
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
        return KerasJsonLocation(path, source, path.parent, notes=tuple(notes))
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
        tmp_fallback=True,
        notes=tuple(notes),
    )
