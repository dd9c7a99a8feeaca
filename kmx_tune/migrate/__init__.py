"""Find and rewrite the channels_last assumptions in Keras model code.

The rules work on a concrete syntax tree (libcst), so a rewrite changes only the
tokens it must -- commas, spacing, comments and quotes stay exactly as they were.

Every rewrite is an involution: migrating to channels_first and then back with
``to="channels_last"`` gives the original text. A shape ``(H, W, C)`` is rotated to
``(C, H, W)`` only when the result can be rotated back without doubt; where it
could not (two channel-like numbers), the finding is reported and nothing is
rewritten. Code guarded by ``if K.image_data_format() == ...`` is correct for both
layouts and is never touched, nor are shapes computed from data.

The package, in the order a file goes through it::

    files.py        paths -> .py files -> FileReport (E999 when a file does not parse),
                    and writing a rewrite in place (kmx_tune.fsio.atomic_write)
    prescan.py      what the whole file says first: image layers? shape variables?
    transformer.py  walks the tree, skips guarded code, tracks image tensors, and
                    dispatches each call through the tables in
    rules.py        one function per kind of finding; CALL_RULES maps a call's name
                    to its rule, so a new case is one entry
    shapes.py       how a shape tuple is rotated, and when that would be a guess
    nodes.py        small libcst helpers; knowledge.py: Keras and numpy names as data
    model.py        the rule codes, CodeFinding, FileReport, and MigrationResult (the
                    command's result: JSON and exit status)
"""

from kmx_tune.migrate.files import iter_python_files, migrate_paths, migrate_source, write_file
from kmx_tune.migrate.model import (
    RULES,
    CodeFinding,
    FileReport,
    MigrationResult,
    Rule,
)

__all__ = [
    "RULES",
    "CodeFinding",
    "FileReport",
    "MigrationResult",
    "Rule",
    "iter_python_files",
    "migrate_paths",
    "migrate_source",
    "write_file",
]
