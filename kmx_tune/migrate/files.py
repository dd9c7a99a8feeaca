"""The file layer: one file's bytes -> a FileReport (files that do not parse become an
E999 finding), the .py files under the given paths, and writing a rewrite in place.

Bounds, so that no file can take the run down: a file is read only when it is a regular
file (a FIFO would hang the read) of at most :data:`MAX_SOURCE_BYTES` (libcst needs about
1 GB of memory and up to 2.5 minutes per MB of code), and analysed in a child process
(:mod:`.isolate`). A folder is searched without following links out of it. A rewrite
is written only if the file still holds the bytes that were analysed, checked again
right before the rename: an edit saved meanwhile is never lost.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST
from kmx_tune.fsio import (
    NotARegularFile,
    TooLarge,
    clean_stale_temps,
    fill,
    publish,
    read_bounded,
    temp_output,
)
from kmx_tune.migrate.isolate import analyse
from kmx_tune.migrate.model import CodeFinding, FileReport, MigrationResult, Skipped
from kmx_tune.migrate.source import check_to, migrate_source

if TYPE_CHECKING:
    from kmx_tune.keras_config import KerasJsonState

# The largest file analysed. libcst takes about 1 GB and 40 s per MB of real Keras code,
# up to 150 s per MB of the densest (x = 1, over and over); the review measured a 6.9 MB
# file at 282 s and 7.4 GB. At 256 KiB the worst case is ~40 s; model code is rarely
# over 50 KB (the Keras examples: 2-12 KB).
MAX_SOURCE_BYTES = 256 << 10

_NOT_A_FILE = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}
__all__ = ["migrate_source"]  # re-exported: the analysis of one text lives in .source


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def collect_python_files(paths: Iterable[Path]) -> tuple[list[Path], list[Skipped]]:
    """Files given by name, and the .py files under given folders (hidden folders,
    __pycache__ and site-packages skipped), each once, folders in sorted order. A .py
    symlink in a folder that leads out of it is skipped, and said (a file named on the
    command line is followed wherever it leads)."""
    seen: set[Path] = set()
    files: list[Path] = []
    skipped: list[Skipped] = []
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist. Pass a .py file or a folder of them.")
        if path.is_dir():
            root = os.path.realpath(path)
            found = []
            for p in sorted(path.rglob("*.py")):
                if not p.is_file() or any(
                    part.startswith(".") or part in ("__pycache__", "site-packages")
                    for part in p.relative_to(path).parts[:-1]
                ):
                    continue
                real = os.path.realpath(p)
                if not _within(real, root):
                    skipped.append(
                        Skipped(
                            str(p),
                            f"a symlink to {real}, outside {path} (a folder is checked "
                            "without following links out of it; name the file to check it)",
                        )
                    )
                    continue
                found.append(p)
        else:
            found = [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, skipped


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """The files :func:`collect_python_files` finds."""
    yield from collect_python_files(paths)[0]


class _Unreadable(Exception):
    """The file is not one to read: the message says why (E902) or that it is too
    large (E901, ``code``)."""

    def __init__(self, message: str, code: str = "E902") -> None:
        super().__init__(message)
        self.code = code


def read_source(path: Path) -> bytes:
    """The bytes of the regular file at *path*, at most :data:`MAX_SOURCE_BYTES`; never
    blocks on a FIFO, never reads a device. Raises OSError or _Unreadable."""
    try:
        return read_bounded(path, MAX_SOURCE_BYTES)
    except NotARegularFile as exc:
        what = _NOT_A_FILE.get(exc.kind, "not a regular file")
        raise _Unreadable(f"could not read: {what}, not a regular file") from None
    except TooLarge as exc:
        raise _Unreadable(
            f"not analysed: {exc.size} bytes, larger than the "
            f"{MAX_SOURCE_BYTES >> 10} KiB migrate analyses (its parser needs about 1 GB of "
            "memory and a minute per MB of code); split the file, or fix it by hand",
            "E901",
        ) from None


def _migrate_file(file: Path, to: str) -> FileReport:
    try:
        data = read_source(file)
    except _Unreadable as exc:
        error = CodeFinding(str(file), 1, 1, exc.code, str(exc), None, False)
        return FileReport(str(file), (error,), b"", None)
    except OSError as exc:
        error = CodeFinding(
            str(file), 1, 1, "E902", f"could not read: {exc.strerror or exc}", None, False
        )
        return FileReport(str(file), (error,), b"", None)
    return analyse(data, to, str(file))


def check_paths(paths: Sequence[Path], to: str = CHANNELS_FIRST) -> MigrationResult:
    """Check the .py files under *paths*; nothing is written."""
    check_to(to)
    files, skipped = collect_python_files(paths)
    reports = tuple(_migrate_file(file, to) for file in files)
    return MigrationResult(to, reports, False, skipped=tuple(skipped))


def write_reports(result: MigrationResult) -> MigrationResult:
    """*result* with each changed file's rewrite written in place, except those that
    changed on disk since they were read. Raises KmxError when a file cannot be
    written (those before it already are)."""
    files = []
    for report in result.files:
        if report.changed:
            why = _write_checked(report)
            report = replace(report, written=why is None, not_written=why)
        files.append(report)
    return replace(result, files=tuple(files), write=True)


def migrate_paths(
    paths: Sequence[Path],
    to: str = CHANNELS_FIRST,
    *,
    write: bool = False,
    keras_json: KerasJsonState | None = None,
) -> MigrationResult:
    """Check the .py files under *paths* and, with *write*, rewrite each changed one in
    place. With *keras_json* (the keras.json in effect, kmx_tune.keras_config.read()),
    also check that it agrees with the layout of the migrated code. Raises KmxError
    when a file cannot be written (those before it already are)."""
    from kmx_tune.migrate.settings import check_keras_json

    result = check_paths(paths, to)
    if write:
        result = write_reports(result)
    if keras_json is not None:
        result = replace(result, settings=check_keras_json(keras_json, result.files, to))
    return result


class _Changed(Exception):
    """The file on disk is no longer the one that was analysed."""


CHANGED = (
    "changed after kmx-tune read it (an edit saved meanwhile?), so the rewrite was not "
    "written; run kmx-tune migrate --write on it again"
)


def write_file(report: FileReport) -> bool:
    """Write the rewritten text in place, atomically, keeping the file's mode (through
    a symlink: the file it points to), if the file still holds the bytes that were
    analysed. Returns True if written."""
    return report.changed and _write_checked(report) is None


def _write_checked(report: FileReport) -> str | None:
    """:func:`write_file`, checking that the file holds the bytes analysed before writing
    and again right before the rename. Returns None when written, else why not."""
    if report.new_source is None:
        return "nothing to write"
    target = Path(os.path.realpath(report.path))

    def check_unchanged() -> None:
        try:
            if read_source(target) != report.source:
                raise _Changed
        except (OSError, _Unreadable):
            raise _Changed from None

    try:
        check_unchanged()
        like = target.stat()
        clean_stale_temps(target)
        with temp_output(target, 0o600) as tmp:
            fill(tmp, report.new_source, like)
            check_unchanged()  # right before the rename: the window is this one call
            publish(tmp.path, target)
    except _Changed:
        return CHANGED
    except OSError as exc:
        raise KmxError(
            f"could not write {report.path}: {exc.strerror or exc}. Check that the file and its "
            "folder are writable; files before it in the list were already rewritten."
        ) from exc
    return None
