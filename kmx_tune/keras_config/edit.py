"""Edit keras.json safely: under a lock, atomically (kmx_tune.fsio), with a backup.

- The lock is a hidden ``.keras.json.lock`` beside the file (out of sight in the user's
  keras folder), opened without following a symlink (:mod:`.guard`).
- The previous content goes to ``keras.json.bak``; when ``--force`` replaces content
  Keras cannot read, it goes to a new numbered ``keras.json.bak.N`` that no later run
  overwrites, and the keys that a tolerant reading recovers are kept (:mod:`.salvage`).
- In a folder that another user owns or may write to (the shared ``/tmp/.keras``
  fallback), a symlinked folder or keras.json is refused: someone else may have planted
  it to make this user write elsewhere (:mod:`.guard`).
- Temporary files that a killed run left (of keras.json and of its backups) are removed
  by the next run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import FORMATS
from kmx_tune.fsio import (
    OutputExistsError,
    atomic_write,
    clean_stale_temps,
    fill,
    publish,
    temp_output,
)
from kmx_tune.keras_config.guard import (
    file_lock,
    refuse_planted_links,
    why,
    write_error,
)
from kmx_tune.keras_config.locate import (
    KERAS_DEFAULTS,
    KerasJsonLocation,
    locate,
)
from kmx_tune.keras_config.salvage import Salvage, salvage
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


def numbered_backup_path(target: Path, number: int) -> Path:
    return target.with_name(f"{target.name}.bak.{number}")


def next_numbered_backup(target: Path) -> Path:
    """``keras.json.bak.N`` with N one more than the highest there now."""
    pattern = re.compile(re.escape(target.name) + r"\.bak\.([0-9]{1,9})")
    numbers = [0]
    with contextlib.suppress(OSError):
        numbers += [
            int(m.group(1)) for name in os.listdir(target.parent) if (m := pattern.fullmatch(name))
        ]
    return numbered_backup_path(target, max(numbers) + 1)


def _empty(state: KerasJsonState) -> bool:
    return state.kind == "malformed" and state.text is not None and not state.text.strip()


def _needs_force(state: KerasJsonState, updates: Mapping[str, Any]) -> bool:
    """Whether an edit would replace content Keras cannot read. A bad value that the
    edit replaces anyway (say image_data_format "NCHW") and an empty file (read as {})
    lose nothing."""
    if state.kind == "bad-values":
        return not set(state.bad_keys) <= set(updates)
    return state.kind in ("malformed", "not-object") and not _empty(state)


def _salvage(state: KerasJsonState) -> Salvage:
    if state.kind == "malformed" and state.text is not None:
        return salvage(state.text)
    return Salvage({}, None)


def _refuse(state: KerasJsonState, updates: Mapping[str, Any], force: bool) -> None:
    """Raise unless ``state`` is something an edit may build on."""
    if state.kind == "unreadable":
        raise KmxError(f"{state.error}; nothing was changed")
    if _needs_force(state, updates) and not force:
        bak = next_numbered_backup(_target(state.location.path))
        kept = ""
        if state.kind == "malformed":
            keys = list(_salvage(state).values)
            kept = (
                f", keeping the {len(keys)} keys it can read ({', '.join(keys)})"
                if keys
                else " (no key in it can be read)"
            )
        raise UsageError(
            f"{state.error}. Nothing was changed: fix it by hand, or rerun with --force to "
            f"replace what Keras cannot read{kept}; the old file is kept as {bak}"
        )


def _plan(
    state: KerasJsonState, updates: Mapping[str, Any], force: bool
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Any], list[str]]:
    """(values before, values the changes are shown against, values after, warnings)
    for ``updates`` applied to ``state``."""
    _refuse(state, updates, force)
    warnings: list[str] = []
    before: dict[str, Any] | None
    if not state.exists:
        before = None
        base: dict[str, Any] = {}
        after = dict(KERAS_DEFAULTS)
    elif _empty(state):
        before, base = None, {}
        after = dict(KERAS_DEFAULTS)
        warnings.append(f"{state.location.path} was empty: wrote Keras's defaults with the change")
    elif state.kind in ("malformed", "not-object"):
        before = None
        rescued = _salvage(state)
        base = dict(rescued.values)
        after = {**KERAS_DEFAULTS, **rescued.values}
        reset = [k for k, _ in validate(after) if k not in updates]
        for key in reset:
            after[key] = KERAS_DEFAULTS[key]
        kept_in = next_numbered_backup(_target(state.location.path))
        note = (
            f"--force: replaced content Keras cannot read ({state.error}); "
            f"{rescued.describe(kept_in)}"
        )
        if reset:
            note += f"; reset {', '.join(reset)} to Keras's default"
        warnings.append(note)
    else:
        before = dict(state.values)
        base = before
        after = dict(state.values)
        reset = [k for k in state.bad_keys if k not in updates]
        for key in reset:
            after[key] = KERAS_DEFAULTS[key]
        if reset:
            warnings.append(f"--force: reset {', '.join(reset)} to Keras's default")
    after.update(updates)
    return before, base, after, warnings


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[KeyChange, ...]:
    return tuple(
        KeyChange(k, before.get(k), v, k not in before)
        for k, v in after.items()
        if k not in before or not _same(before[k], v)
    )


def _clean_leftovers(target: Path) -> list[Path]:
    """Temporary files of keras.json and of its backups that killed runs left."""
    return clean_stale_temps(target) + clean_stale_temps(backup_path(target))


def _keep_numbered(target: Path, data: bytes, like: os.stat_result) -> Path:
    """Write *data* to a new ``keras.json.bak.N`` and return it; an existing name (a
    backup, or a link someone planted) is never replaced."""
    # the temporary file is named after keras.json.bak, so the next run cleans it
    with temp_output(backup_path(target), 0o600) as tmp:
        fill(tmp, data, like)
        while True:
            numbered = next_numbered_backup(target)
            try:
                publish(tmp.path, numbered, overwrite=False)
            except OutputExistsError:
                continue  # taken between the listing and the link: the next number
            return numbered


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
    ``<file>.bak`` (or, when ``force`` replaces content Keras cannot read, in a new
    ``<file>.bak.N``). Nothing is written when nothing changes or on ``dry_run``. Raises
    KmxError/UsageError (one line, the file untouched) for files it must not edit."""
    env = os.environ if env is None else env
    location = locate(env=env) if location is None else location
    problems = validate(updates)
    if problems:
        raise UsageError("; ".join(p for _, p in problems))
    refuse_planted_links(location)
    target = _target(location.path)

    state = read(location, env)
    before, base, after, warnings = _plan(state, updates, force)
    changes = _changes(base, after)
    changed = bool(changes) or not state.exists or state.kind != "ok"
    if dry_run or not changed:
        if not dry_run:
            _clean_leftovers(target)
        return EditResult(
            location, target, changed, False, dry_run, not state.exists, before, after,
            changes, None, tuple(warnings),
        )  # fmt: skip
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(exc, target, target) from exc
    with file_lock(target):
        _clean_leftovers(target)
        # read again under the lock: another run may have changed the file meanwhile
        state = read(location, env)
        before, base, after, warnings = _plan(state, updates, force)
        changes = _changes(base, after)
        changed = bool(changes) or not state.exists or state.kind != "ok"
        backup = None
        if changed:
            old_stat = None
            if state.exists and state.data is not None:
                try:
                    old_stat = target.stat()
                except OSError as exc:
                    raise KmxError(
                        f"cannot read {target} ({why(exc)}); nothing was changed"
                    ) from exc
                try:
                    if force and _needs_force(state, updates):
                        backup = _keep_numbered(target, state.data, old_stat)
                    else:
                        backup = backup_path(target)
                        atomic_write(backup, state.data, like=old_stat)
                except OSError as exc:
                    raise write_error(exc, backup or backup_path(target), target) from exc
            try:
                atomic_write(target, dumps(after).encode("utf-8"), like=old_stat)
            except OSError as exc:
                raise write_error(exc, target, target) from exc
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
