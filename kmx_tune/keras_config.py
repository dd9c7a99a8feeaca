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

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pwd
import secrets
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, UsageError

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

# How long a run waits for another kmx-tune holding the lock before giving up.
LOCK_TIMEOUT_S = 30.0


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
    if not text.strip():
        return KerasJsonState(
            location,
            True,
            {},
            f"{where} is empty (Keras ignores it and uses its defaults)",
            backend_override,
            text,
            "malformed",
        )
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


# --------------------------------------------------------------------------- edit


@dataclass(frozen=True)
class Change:
    """One key's value before -> after. ``before`` is None when the key was absent."""

    key: str
    before: Any
    after: Any
    added: bool


@dataclass(frozen=True)
class EditResult:
    """What an edit did (or, with dry_run, would do)."""

    location: KerasJsonLocation
    path: Path  # the file written: location.path, or its target when that is a symlink
    changed: bool  # the values differ from the file's (always True when it is created)
    written: bool  # a file was written (False for dry runs and for no-op edits)
    dry_run: bool
    created: bool  # there was no keras.json before
    before: dict[str, Any] | None  # the file's values, None when missing or unreadable JSON
    after: dict[str, Any]
    changes: tuple[Change, ...]
    backup: Path | None  # where the previous content was kept
    warnings: tuple[str, ...]
    text_after: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.location.path),
            "target": str(self.path),
            "source": self.location.source,
            "changed": self.changed,
            "written": self.written,
            "created": self.created,
            "dry_run": self.dry_run,
            "before": self.before,
            "after": self.after,
            "changes": [
                {"key": c.key, "before": c.before, "after": c.after, "added": c.added}
                for c in self.changes
            ],
            "backup": None if self.backup is None else str(self.backup),
            "warnings": list(self.warnings),
        }


def dumps(values: Mapping[str, Any]) -> str:
    """keras.json text exactly as Keras writes it: 4-space indent, no trailing newline."""
    return json.dumps(values, indent=4)


def _same(a: Any, b: Any) -> bool:
    # 1 == 1.0 == True in Python, but Keras rejects an int epsilon: compare types too
    return type(a) is type(b) and a == b


def _target(path: Path) -> Path:
    """The file to replace: a symlink's final target, so the link itself survives."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def backup_path(target: Path) -> Path:
    return target.with_name(target.name + ".bak")


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _write_error(exc: OSError, what: Path, original: Path) -> KmxError:
    untouched = f"{original} was not changed" if original.exists() else "nothing was written"
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return KmxError(
            f"no space left on the disk holding {what}; {untouched}. Free some space and rerun"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return KmxError(
            f"cannot write in {what.parent} ({_why(exc)}); {untouched}. Fix its permissions, "
            "or set KERAS_HOME (or --keras-home) to a writable folder"
        )
    return KmxError(f"cannot write {what} ({_why(exc)}); {untouched}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory; the rename is done anyway
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, like: os.stat_result | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file in the same folder,
    fsync, then rename over it. The mode (and, for root, owner) of ``like`` is kept; a new
    file gets 0o666 less the umask, as Keras's ``open(path, 'w')`` would."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    mode = 0o666 if like is None else stat.S_IMODE(like.st_mode)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if like is not None:
                os.fchmod(fd, mode)  # os.open applied the umask; keep the exact old mode
                if os.geteuid() == 0 and (like.st_uid, like.st_gid) != (os.getuid(), os.getgid()):
                    os.fchown(fd, like.st_uid, like.st_gid)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def file_lock(target: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive flock on ``<target>.lock`` (never on the file that is renamed).

    The lock file stays after the run: deleting it would let a waiting process lock an
    unlinked inode while a third creates a fresh one."""
    lock = lock_path(target)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise _write_error(exc, lock, target) from exc
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KmxError(
                        f"another program has held {lock} for {timeout_s:.0f}s; "
                        "wait for it to finish and rerun"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _empty(state: KerasJsonState) -> bool:
    return state.kind == "malformed" and state.text is not None and not state.text.strip()


def _refuse(state: KerasJsonState, updates: Mapping[str, Any], force: bool) -> None:
    """Raise unless ``state`` is something an edit may build on. A bad value that the edit
    replaces anyway (say image_data_format "NCHW") is no reason to refuse."""
    if state.kind == "unreadable":
        raise KmxError(f"{state.error}; nothing was changed")
    if state.kind == "bad-values" and set(state.bad_keys) <= set(updates):
        return
    if _empty(state):
        return  # Keras reads it as {}: there is nothing to lose
    if state.kind in ("malformed", "not-object", "bad-values") and not force:
        bak = backup_path(_target(state.location.path))
        raise UsageError(
            f"{state.error}. Nothing was changed: fix it by hand, or rerun with --force to "
            f"replace what Keras cannot read (the old file is kept as {bak})"
        )


def _plan(
    state: KerasJsonState, updates: Mapping[str, Any], force: bool
) -> tuple[dict[str, Any] | None, dict[str, Any], list[str]]:
    """(values before, values after, warnings) for ``updates`` applied to ``state``."""
    _refuse(state, updates, force)
    warnings: list[str] = []
    if not state.exists:
        before = None
        after = dict(KERAS_DEFAULTS)
    elif _empty(state):
        before = None
        after = dict(KERAS_DEFAULTS)
        warnings.append(f"{state.location.path} was empty: wrote Keras's defaults with the change")
    elif state.kind in ("malformed", "not-object"):
        before = None
        after = dict(KERAS_DEFAULTS)
        warnings.append(f"--force: replaced content Keras cannot read ({state.error})")
    else:
        before = dict(state.values)
        after = dict(state.values)
        reset = [k for k in state.bad_keys if k not in updates]
        for key in reset:
            after[key] = KERAS_DEFAULTS[key]
        if reset:
            warnings.append(f"--force: reset {', '.join(reset)} to Keras's default")
    after.update(updates)
    return before, after, warnings


def _changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[Change, ...]:
    before = before or {}
    return tuple(
        Change(k, before.get(k), v, k not in before)
        for k, v in after.items()
        if k not in before or not _same(before[k], v)
    )


def update(
    updates: Mapping[str, Any],
    location: KerasJsonLocation | None = None,
    *,
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> EditResult:
    """Set ``updates`` in keras.json, keeping every other key, its value and the order.

    Serialised by a lock; the file is replaced atomically after its old content is kept in
    ``<file>.bak``. Nothing is written when nothing changes or on ``dry_run``. Raises
    KmxError/UsageError (one line, the file untouched) for files it must not edit."""
    env = os.environ if env is None else env
    location = locate(env=env) if location is None else location
    problems = validate(updates)
    if problems:
        raise UsageError("; ".join(p for _, p in problems))
    target = _target(location.path)

    def plan() -> tuple[KerasJsonState, dict[str, Any] | None, dict[str, Any], list[str]]:
        state = read(location, env)
        before, after, warnings = _plan(state, updates, force)
        return state, before, after, warnings

    state, before, after, warnings = plan()
    changes = _changes(before, after)
    changed = bool(changes) or not state.exists or state.kind != "ok"
    if dry_run or not changed:
        return EditResult(
            location, target, changed, False, dry_run, not state.exists, before, after,
            changes, None, tuple(warnings), dumps(after),
        )  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, target, target) from exc
    with file_lock(target):
        # read again under the lock: another run may have changed the file meanwhile
        state, before, after, warnings = plan()
        changes = _changes(before, after)
        changed = bool(changes) or not state.exists or state.kind != "ok"
        backup = None
        if changed:
            old_stat = None
            if state.exists:
                try:
                    old_bytes = target.read_bytes()
                    old_stat = target.stat()
                except OSError as exc:
                    raise KmxError(
                        f"cannot read {target} ({_why(exc)}); nothing was changed"
                    ) from exc
                backup = backup_path(target)
                try:
                    atomic_write(backup, old_bytes, old_stat)
                except OSError as exc:
                    raise _write_error(exc, backup, target) from exc
            try:
                atomic_write(target, dumps(after).encode("utf-8"), old_stat)
            except OSError as exc:
                raise _write_error(exc, target, target) from exc
    return EditResult(
        location, target, changed, changed, False, not state.exists, before, after, changes,
        backup, tuple(warnings), dumps(after),
    )  # fmt: skip


def set_format(
    image_data_format: str,
    backend: str | None = "mxnet",
    *,
    location: KerasJsonLocation | None = None,
    env: Mapping[str, str] | None = None,
    dry_run: bool = False,
    force: bool = False,
) -> EditResult:
    """Set image_data_format and, unless ``backend`` is None (--backend keep), the backend."""
    env = os.environ if env is None else env
    if image_data_format not in FORMATS:
        raise UsageError(
            f"image_data_format must be channels_first or channels_last, got {image_data_format!r}"
        )
    location = locate(env=env) if location is None else location
    updates: dict[str, Any] = {"image_data_format": image_data_format}
    if backend is not None:
        updates["backend"] = backend
    result = update(updates, location, env=env, dry_run=dry_run, force=force)
    warnings = list(result.warnings) + list(location.notes)
    override = env.get("KERAS_BACKEND")
    if override and override != result.after.get("backend"):
        warnings.append(
            f"KERAS_BACKEND={override} in the environment overrides the file's backend "
            f"{result.after.get('backend')!r}; unset it (or set it to mxnet)"
        )
    if location.path.is_symlink():
        warnings.append(f"{location.path} is a symlink: edited its target {result.path}")
    return dataclasses.replace(result, warnings=tuple(warnings))
