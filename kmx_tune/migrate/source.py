"""One file's text -> its findings and its rewrite (:func:`migrate_source`). Pure: no
file is read or written here (except the data files a load names, inspected by
:mod:`.data`), so it runs as well in the child process of :mod:`.isolate`."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

import libcst as cst
from libcst.metadata import MetadataWrapper

from kmx_tune.errors import UsageError
from kmx_tune.formats import CHANNELS_FIRST, FORMATS, other
from kmx_tune.migrate.model import NOT_REWRITTEN, CodeFinding, FileReport
from kmx_tune.migrate.prescan import Prescan
from kmx_tune.migrate.transformer import Migrator

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.I)


def check_to(to: str) -> None:
    if to not in FORMATS:
        raise UsageError(f"--to must be channels_first or channels_last, not {to!r}.")


def migrate_source(
    source: str | bytes, to: str = CHANNELS_FIRST, path: str = "<string>"
) -> FileReport:
    """Find the findings in one file's text and compute the rewritten text. Pure."""
    check_to(to)
    raw = source.encode("utf-8") if isinstance(source, str) else source
    too_deep = _too_deep_for_python(raw)
    if too_deep is not None:
        error = CodeFinding(path, 1, 1, "E999", too_deep, None, False)
        return FileReport(path, (error,), raw, None)
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
    folder = None if path.startswith("<") else Path(path).parent
    migrator = Migrator(path, to, prescan, folder)
    new_module = MetadataWrapper(module, unsafe_skip_copy=True).visit(migrator)
    findings = _without_noqa(
        sorted(migrator.findings, key=lambda f: (f.line, f.col, f.code)), raw, module.encoding
    )
    image = prescan.image_code
    sets = _format_set(prescan.formats_set, to)
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
        return FileReport(
            path, findings, raw, raw, module.encoding, image_code=image, sets_format=sets
        )
    return FileReport(
        path, findings, raw, new_module.bytes, module.encoding, image_code=image, sets_format=sets
    )


def _format_set(formats: list[str], to: str) -> str | None:
    """The image_data_format the code sets itself once migrated to *to*
    (``K.set_image_data_format('channels_last')`` is rewritten to *to*)."""
    if not formats:
        return None
    last = formats[-1]
    return to if last == other(to) else last


def _without_noqa(
    findings: list[CodeFinding], raw: bytes, encoding: str
) -> tuple[CodeFinding, ...]:
    """The findings less those that kmx-tune does not rewrite and whose line says
    ``# noqa`` or ``# noqa: CODE`` (a rewrite is never silenced this way)."""
    if b"noqa" not in raw.lower():
        return tuple(findings)
    lines = raw.decode(encoding, errors="replace").splitlines()
    kept = []
    for f in findings:
        line = lines[f.line - 1] if 0 < f.line <= len(lines) else ""
        match = None if f.fixable else _NOQA.search(line)
        if match is not None:
            codes = match.group("codes")
            if codes is None or f.code in {c.strip().upper() for c in codes.split(",")}:
                continue
        kept.append(f)
    return tuple(kept)


# CPython's own messages for code nested beyond its parser's limits
_PYTHON_DEPTH_LIMITS = ("too many nested parentheses", "too many statically nested blocks")
_PYTHON_DEFAULT_RECURSION_LIMIT = 1000


def _depth() -> int:
    """Frames on the stack now: the default limit counts from a script's top level."""
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def _too_deep_for_python(raw: bytes) -> str | None:
    """Why CPython itself cannot compile *raw* for its depth, or None.

    CPython's parser guards its own stack and says so; libcst's parser does not, and
    on such code it runs for minutes, takes gigabytes or crashes (SIGSEGV). Code that
    CPython refuses for its depth could never run, so libcst never sees it. CPython's
    depth limit follows the recursion limit: the check runs with Python's default, as
    ``python script.py`` would."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_PYTHON_DEFAULT_RECURSION_LIMIT + _depth())
    try:
        ast.parse(raw)
    except (RecursionError, MemoryError) as exc:
        return (
            f"nests too deeply to analyse: Python cannot compile it either ({type(exc).__name__}); "
            "split the deepest expression into smaller ones"
        )
    except SyntaxError as exc:
        if any(limit in str(exc.msg) for limit in _PYTHON_DEPTH_LIMITS):
            return (
                f"nests too deeply to analyse: Python cannot compile it either ({exc.msg}, "
                f"line {exc.lineno}); split the deepest expression into smaller ones"
            )
    except ValueError:  # null bytes: libcst says what is wrong
        pass
    finally:
        sys.setrecursionlimit(limit)
    return None


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
