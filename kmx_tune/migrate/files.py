"""The file layer: one file's bytes -> a FileReport (files that do not parse become an
E999 finding), the .py files under the given paths, and writing a rewrite in place."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST, FORMATS
from kmx_tune.fsio import atomic_write
from kmx_tune.migrate.model import (
    NOT_REWRITTEN,
    CodeFinding,
    FileReport,
    MigrationResult,
)
from kmx_tune.migrate.prescan import Prescan
from kmx_tune.migrate.transformer import Migrator


def _check_to(to: str) -> None:
    if to not in FORMATS:
        raise UsageError(f"--to must be channels_first or channels_last, not {to!r}.")


def migrate_source(
    source: str | bytes, to: str = CHANNELS_FIRST, path: str = "<string>"
) -> FileReport:
    """Find the findings in one file's text and compute the rewritten text. Pure."""
    _check_to(to)
    raw = source.encode("utf-8") if isinstance(source, str) else source
    try:
        module = cst.parse_module(raw)
    except cst.ParserSyntaxError as exc:
        line, col, why = _syntax_error(raw, exc)
        error = CodeFinding(path, line, col, "E999", f"could not parse: {why}", None, False)
        return FileReport(path, (error,), raw, None)
    except (UnicodeDecodeError, SyntaxError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, UnicodeDecodeError) or "encoding" in first:
            first += "; save the file as UTF-8, or declare its encoding (# -*- coding: latin-1 -*-)"
        error = CodeFinding(path, 1, 1, "E999", f"could not parse: {first}", None, False)
        return FileReport(path, (error,), raw, None)
    prescan = Prescan()
    module.visit(prescan)
    migrator = Migrator(path, to, prescan)
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(migrator)
    findings = tuple(sorted(migrator.findings, key=lambda f: (f.line, f.col, f.code)))
    if module.bytes != raw:
        # libcst would not give this file back byte for byte (it drops the last "\r"
        # of old-Mac line endings): report, never rewrite
        why = (
            "libcst cannot reproduce this file byte for byte (CR-only line endings?); edit by hand"
        )
        findings = tuple(
            replace(
                f,
                message=f"{f.message} [{NOT_REWRITTEN}: {why}]",
                replacement=None,
                fixable=False,
            )
            if f.fixable
            else f
            for f in findings
        )
        return FileReport(path, findings, raw, raw, module.encoding)
    return FileReport(path, findings, raw, new_module.bytes, module.encoding)


def _syntax_error(raw: bytes, exc: cst.ParserSyntaxError) -> tuple[int, int, str]:
    """Where and why, in Python's words: libcst's message lists every token it
    expected, and its position can be a line late."""
    try:
        ast.parse(raw)
    except SyntaxError as py_exc:
        return py_exc.lineno or 1, py_exc.offset or 1, py_exc.msg
    except ValueError:  # e.g. null bytes
        pass
    return exc.raw_line, exc.raw_column + 1, "syntax this version of libcst does not know"


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files given by name, and the .py files under given folders (hidden folders,
    __pycache__ and site-packages skipped), each once, folders in sorted order."""
    seen: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise UsageError(f"{path} does not exist. Pass a .py file or a folder of them.")
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*.py")
                if p.is_file()
                and not any(
                    part.startswith(".") or part in ("__pycache__", "site-packages")
                    for part in p.relative_to(path).parts[:-1]
                )
            )
        else:
            found = [path]
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                yield file


def migrate_paths(
    paths: Sequence[Path], to: str = CHANNELS_FIRST, *, write: bool = False
) -> MigrationResult:
    """Check the .py files under *paths* and, with *write*, rewrite each changed one in
    place. Raises KmxError when a file cannot be written (those before it already are)."""
    _check_to(to)
    reports = [_migrate_file(file, to) for file in iter_python_files(paths)]
    if write:
        reports = [replace(fr, written=True) if write_file(fr) else fr for fr in reports]
    return MigrationResult(to, tuple(reports), write)


def _migrate_file(file: Path, to: str) -> FileReport:
    try:
        data = file.read_bytes()
    except OSError as exc:
        error = CodeFinding(str(file), 1, 1, "E902", f"could not read: {exc.strerror}", None, False)
        return FileReport(str(file), (error,), b"", None)
    return migrate_source(data, to, str(file))


def write_file(report: FileReport) -> bool:
    """Write the rewritten text in place, atomically, keeping the file's mode (through
    a symlink: the file it points to). Returns True if written."""
    if not report.changed or report.new_source is None:
        return False
    target = Path(os.path.realpath(report.path))
    try:
        atomic_write(target, report.new_source, like=target.stat())
    except OSError as exc:
        raise KmxError(
            f"could not write {report.path}: {exc.strerror or exc}. Check that the file and its "
            "folder are writable; files before it in the list were already rewritten."
        ) from exc
    return True
