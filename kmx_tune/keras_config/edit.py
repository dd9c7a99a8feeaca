"""Edit keras.json safely: under a lock, atomically (kmx_tune.fsio), with a backup."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import FORMATS
from kmx_tune.fsio import atomic_write
from kmx_tune.keras_config.locate import (
    KERAS_DEFAULTS,
    LOCK_TIMEOUT_S,
    KerasJsonLocation,
    locate,
)
from kmx_tune.keras_config.state import KerasJsonState, read, validate


@dataclass(frozen=True)
class KeyChange:
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
    changes: tuple[KeyChange, ...]
    backup: Path | None  # where the previous content was kept
    warnings: tuple[str, ...]

    exit_code = 0  # an edit that cannot be made raises instead

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "kmx-tune/set-format/1",
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


def _changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[KeyChange, ...]:
    before = before or {}
    return tuple(
        KeyChange(k, before.get(k), v, k not in before)
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
            changes, None, tuple(warnings),
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
                    atomic_write(backup, old_bytes, like=old_stat)
                except OSError as exc:
                    raise _write_error(exc, backup, target) from exc
            try:
                atomic_write(target, dumps(after).encode("utf-8"), like=old_stat)
            except OSError as exc:
                raise _write_error(exc, target, target) from exc
    return EditResult(
        location, target, changed, changed, False, not state.exists, before, after, changes,
        backup, tuple(warnings),
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
