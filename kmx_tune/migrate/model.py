"""What a migration finds and gives back: the rule table, one finding in code
(:class:`CodeFinding`), one file's findings and rewrite (:class:`FileReport`), and the
whole run (:class:`MigrationResult`, the command's result)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

SCHEMA = "kmx-tune/migrate/1"


@dataclass(frozen=True)
class Rule:
    code: str
    title: str


# The rule table. Codes are stable: tests, --json consumers and users' notes refer to them.
RULES: tuple[Rule, ...] = (
    Rule("KMX101", "hard-coded image shape in input_shape= (or a variable passed as it)"),
    Rule("KMX102", "hard-coded image shape in batch_input_shape=, Input(shape=) or batch_shape="),
    Rule("KMX103", "hard-coded image shape as a Reshape target"),
    Rule("KMX201", "BatchNormalization on the channels_last axis"),
    Rule("KMX202", "concatenation on the channels_last axis"),
    Rule("KMX301", "explicit data_format= on a layer"),
    Rule("KMX302", "K.set_image_data_format() call"),
    Rule("KMX401", "numpy reshape that adds a trailing channel axis"),
    Rule("KMX402", "a trailing channel axis added to image data: np.expand_dims(x, -1), "
         "x[..., np.newaxis], x[:, :, :, None]"),
    Rule("KMX403", "numpy array created in an image layout (reported, never rewritten)"),
    Rule("KMX501", "np.load of image data saved channels_last: convert the file (reported)"),
    Rule("KMX502", "HDF5Matrix or h5py.File of image data: convert the file (reported)"),
    Rule("KMX601", "the keras.json in effect disagrees with the layout of the code (reported)"),
    Rule("KMX602", "code that sets KERAS_BACKEND to another backend (reported)"),
    Rule("E901", "file not analysed: too large, or out of memory or time (reported)"),
    Rule("E902", "file could not be read, or is not a regular file (reported)"),
    Rule("E999", "file could not be parsed, or nests too deeply to analyse (reported)"),
)  # fmt: skip

# The mark on a finding's message that kmx-tune will not rewrite it: "[not rewritten: why]"
NOT_REWRITTEN = "not rewritten"


@dataclass(frozen=True)
class CodeFinding:
    """One place in one file. ``replacement`` is the suggested code for the span at
    ``line``/``col`` (1-based), or None where kmx-tune will not rewrite it."""

    path: str
    line: int
    col: int
    code: str
    message: str
    replacement: str | None
    fixable: bool

    def to_json(self, fixed: bool = False) -> dict[str, object]:
        return {
            "file": self.path,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "replacement": self.replacement,
            "fixable": self.fixable,
            "fixed": fixed,
        }


@dataclass(frozen=True)
class FileReport:
    """The findings in one file, its text before and after the fixable rewrites.
    ``new_source`` is None when the file could not be parsed (or read); ``written``
    says the rewrite was written in place, ``not_written`` why it was not (the file
    changed meanwhile). ``image_code``: the file builds image models (so it depends on
    the image_data_format in effect); ``sets_format``: the format it sets itself with
    K.set_image_data_format, after the rewrite."""

    path: str
    findings: tuple[CodeFinding, ...]
    source: bytes
    new_source: bytes | None
    encoding: str = "utf-8"
    written: bool = False
    not_written: str | None = None
    image_code: bool = False
    sets_format: str | None = None

    @property
    def changed(self) -> bool:
        return self.new_source is not None and self.new_source != self.source

    def is_fixed(self, finding: CodeFinding) -> bool:
        """Whether *finding*, one of this file's, is fixed on disk."""
        return self.written and finding.fixable

    def diff(self) -> str:
        """A unified diff of the rewrite, empty when nothing changes."""
        if not self.changed or self.new_source is None:
            return ""
        old = self.source.decode(self.encoding).splitlines(keepends=True)
        new = self.new_source.decode(self.encoding).splitlines(keepends=True)
        # git's a/ b/ prefixes for relative paths; an absolute path is shown as it is
        before, after = (self.path, self.path)
        if not os.path.isabs(self.path):
            before, after = f"a/{self.path}", f"b/{self.path}"
        lines = difflib.unified_diff(old, new, fromfile=before, tofile=after)
        out = []
        for line in lines:
            out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
        return "".join(out)


@dataclass(frozen=True)
class Skipped:
    """A file found under a folder and not checked, and why."""

    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.path, "reason": self.reason}


@dataclass(frozen=True)
class MigrationResult:
    """A whole run: every file checked for the layout ``to`` and, with ``write``, the
    rewrites written in place. ``settings``: findings about the keras.json in effect
    (KMX601), which are not in any .py file; ``skipped``: files not checked."""

    to: str
    files: tuple[FileReport, ...]
    write: bool = False
    settings: tuple[CodeFinding, ...] = ()
    skipped: tuple[Skipped, ...] = ()

    @property
    def findings(self) -> tuple[CodeFinding, ...]:
        return tuple(f for fr in self.files for f in fr.findings) + self.settings

    @property
    def fixable_count(self) -> int:
        return sum(1 for f in self.findings if f.fixable)

    @property
    def unfixable_count(self) -> int:
        return sum(1 for f in self.findings if not f.fixable)

    @property
    def files_written(self) -> int:
        return sum(1 for fr in self.files if fr.written)

    @property
    def fixed_count(self) -> int:
        return sum(1 for fr in self.files for f in fr.findings if fr.is_fixed(f))

    @property
    def remaining_count(self) -> int:
        """Findings not fixed on disk: with ``write``, those left to fix by hand and
        those in files that changed meanwhile; without, all of them."""
        return len(self.findings) - self.fixed_count

    @property
    def not_written(self) -> tuple[FileReport, ...]:
        return tuple(fr for fr in self.files if fr.not_written is not None)

    @property
    def exit_code(self) -> int:
        """0: nothing to do. 1: findings; with ``write``, findings left to fix by hand
        (files that could not be parsed, or that changed meanwhile, among them)."""
        return 1 if self.remaining_count else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "to": self.to,
            "write": self.write,
            "files_checked": len(self.files),
            "files_written": self.files_written,
            "findings": [f.to_json(fixed=fr.is_fixed(f)) for fr in self.files for f in fr.findings]
            + [f.to_json() for f in self.settings],
            "not_written": [{"file": fr.path, "reason": fr.not_written} for fr in self.not_written],
            "skipped": [s.to_json() for s in self.skipped],
        }
