"""keras.json as Keras would see it: read, parsed, validated; never raises for bad
content.

Reading is bounded: the file is opened without blocking (a FIFO would hang ``import
keras`` and would hang us), only a regular file is read, and at most :data:`MAX_BYTES`
of it; JSON that nests too deeply or holds an integer Python refuses to convert is an
error in the state, never an exception."""

from __future__ import annotations

import errno
import json
import os
import shlex
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmx_tune import fsio
from kmx_tune.formats import FORMATS
from kmx_tune.keras_config.locate import (
    FLOATX_VALUES,
    KERAS_DEFAULTS,
    KerasJsonLocation,
    locate,
)

# A keras.json holds a handful of settings (Keras-MXNet writes 100 bytes): reading more
# than this is reading something that is not a keras.json.
MAX_BYTES = 1 << 20

_NOT_A_FILE = {
    stat.S_IFIFO: ("a FIFO (named pipe)", "import keras would hang reading it"),
    stat.S_IFCHR: ("a character device", "import keras would read it without end"),
    stat.S_IFBLK: ("a block device", "import keras would read the whole device"),
    stat.S_IFSOCK: ("a socket", "import keras cannot read it"),
}


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
    data: bytes | None = None  # the file's bytes as read, None when it could not be read

    @property
    def effective(self) -> dict[str, tuple[Any, str]]:
        """What Keras will use for each setting, and where it comes from."""
        return effective_values(self)

    @property
    def exit_code(self) -> int:
        """``kmx-tune config`` exits 1 when the file is one Keras cannot use."""
        return 1 if self.error else 0

    def to_json(self) -> dict[str, Any]:
        loc = self.location
        return {
            "schema": "kmx-tune/keras-config/1",
            "path": str(loc.path),
            "source": loc.source,
            "tmp_fallback": loc.tmp_fallback,
            "exists": self.exists,
            "status": self.kind,
            "error": self.error,
            "backend_override": self.backend_override,
            "values": self.values,
            "effective": {k: {"value": v, "from": src} for k, (v, src) in self.effective.items()},
            "other_keys": [k for k in self.values if k not in KERAS_DEFAULTS],
            "notes": list(loc.notes),
        }


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


def _loads(text: str) -> tuple[Any, str | None]:
    """(the parsed JSON, None) or (None, why it cannot be read). Keras catches ValueError
    only (and reads the file as {}); a RecursionError makes ``import keras`` fail."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return (
            None,
            f"is not valid JSON: {_json_error(exc)} (Keras ignores it and uses its defaults)",
        )
    except ValueError as exc:  # int("9" * 5000): Python's limit on integer digits
        if "digits" not in str(exc):
            raise
        return None, (
            "holds an integer with more than 4300 digits, which Python refuses to read "
            "(Keras ignores the file and uses its defaults)"
        )
    except RecursionError:
        return None, "is nested too deeply to read (import keras fails on it: RecursionError)"


def parse(
    text: str,
    location: KerasJsonLocation,
    backend_override: str | None,
    data: bytes | None = None,
) -> KerasJsonState:
    """Judge keras.json text the way Keras would read it."""
    where = str(location.path)
    if not text.strip():
        return KerasJsonState(
            location,
            True,
            {},
            f"{where} is empty (Keras ignores it and uses its defaults)",
            backend_override,
            text,
            "malformed",
            data=data,
        )
    obj, why = _loads(text)
    if why is not None:
        return KerasJsonState(
            location, True, {}, f"{where} {why}", backend_override, text, "malformed", data=data
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
            data=data,
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
            data,
        )
    return KerasJsonState(location, True, obj, None, backend_override, text, "ok", data=data)


class _CannotRead(Exception):
    """keras.json is there but is not something to read: the message says what it is."""


def read_bounded(path: os.PathLike[str] | str) -> bytes:
    """The bytes of the regular file at *path* (a symlink is followed), at most
    :data:`MAX_BYTES`. Never blocks on a FIFO and never reads a device. Raises OSError
    (FileNotFoundError, NotADirectoryError, ...) or _CannotRead with the reason."""
    try:
        return fsio.read_bounded(path, MAX_BYTES)
    except fsio.NotARegularFile as exc:
        if exc.kind == stat.S_IFDIR:
            raise _CannotRead(
                f"{path} is a directory, not a file (import keras fails on it); move it away"
            ) from None
        what, why = _NOT_A_FILE.get(exc.kind, ("not a regular file", "Keras cannot read it"))
        raise _CannotRead(f"{path} is {what}, not a file: {why}; move it away") from None
    except fsio.TooLarge as exc:
        raise _CannotRead(_too_large(path, exc.size)) from None


def _too_large(path: os.PathLike[str] | str, size: int) -> str:
    return (
        f"{path} is {size} bytes, more than the {MAX_BYTES >> 20} MiB kmx-tune reads "
        "(a keras.json holds a few settings); move it away"
    )


def read(
    location: KerasJsonLocation | None = None, env: Mapping[str, str] | None = None
) -> KerasJsonState:
    """Read keras.json at ``location`` (default: :func:`locate`). Never raises for bad
    content or unreadable files: the problem is in ``error``."""
    env = os.environ if env is None else env
    location = locate(env=env) if location is None else location
    override = env.get("KERAS_BACKEND")
    path = location.path
    try:
        data = read_bounded(path)
    except _CannotRead as exc:
        return KerasJsonState(location, True, {}, str(exc), override, None, "unreadable")
    except FileNotFoundError:
        # also a dangling symlink: Keras creates its target on first import
        return KerasJsonState(location, False, {}, None, override, None, "missing")
    except NotADirectoryError:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), path.parent)
        return KerasJsonState(
            location,
            True,
            {},
            f"{blocker} is a file, not a folder, so {path} cannot exist; "
            "point KERAS_HOME (or --keras-home) at a folder",
            override,
            None,
            "unreadable",
        )
    except OSError as exc:
        why = f"cannot read {path}: {exc.strerror or exc}"
        if exc.errno == errno.ELOOP:
            why = f"{path} is a symlink that never reaches a file ({exc.strerror}); move it away"
        return KerasJsonState(location, True, {}, why, override, None, "unreadable")
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
            data=data,
        )
    return parse(text, location, override, data)


def repair_command(state: KerasJsonState, image_data_format: str = "channels_first") -> str:
    """The command that gives Keras a usable keras.json in place of *state*'s file.

    ``set-format --force`` replaces content Keras cannot read; what kmx-tune will not
    read or replace (a folder, a FIFO, a device, a symlink loop, a huge file) is moved
    aside first, so nothing is lost."""
    set_format = f"kmx-tune set-format {image_data_format}"
    if state.kind != "unreadable" or not os.path.lexists(state.location.path):
        return set_format + (" --force" if state.error else "")
    path = str(state.location.path)
    # a folder keeps the name doctor has always printed for it
    aside = path + (".bak" if os.path.isdir(path) and not os.path.islink(path) else ".broken")
    return f"{shlex.join(['mv', path, aside])} && {set_format}"


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
