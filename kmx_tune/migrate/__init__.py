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

    files.py        paths -> .py files (bounded reads, no links out of a folder) ->
                    FileReport (E999 when a file does not parse), and writing a rewrite
                    in place only if the file is unchanged (kmx_tune.fsio)
    isolate.py      the analysis of one file in a forked child: a parser crash, a stack
                    overflow, running out of memory or time is a finding, not the end
    prescan.py      what the whole file says first: image layers? shape variables?
    source.py       one file's text -> findings and rewrite (E999 first for code too
                    deep for Python itself), ``# noqa`` for findings reported only
    transformer.py  walks the tree, skips guarded code, tracks image tensors, and
                    dispatches each call and subscript through the tables in
    rules.py        one function per kind of finding; CALL_RULES maps a call's name
                    to its rule, so a new case is one entry; site.py: what a rule may
                    ask of the walk; loads.py: the rules on data files and the backend
    shapes.py       how a shape tuple is rotated, and when that would be a guess
    nodes.py        small libcst helpers; knowledge.py: Keras and numpy names as data
    data.py         the data files the code loads: found, and inspected (headers only)
    settings.py     the keras.json in effect against the layout migrated to (KMX601)
    model.py        the rule codes, CodeFinding, FileReport, and MigrationResult (the
                    command's result: JSON and exit status)
"""

from kmx_tune.migrate.files import (
    MAX_SOURCE_BYTES,
    check_paths,
    iter_python_files,
    migrate_paths,
    migrate_source,
    write_file,
    write_reports,
)
from kmx_tune.migrate.model import (
    RULES,
    CodeFinding,
    FileReport,
    MigrationResult,
    Rule,
    Skipped,
)

__all__ = [
    "MAX_SOURCE_BYTES",
    "RULES",
    "CodeFinding",
    "FileReport",
    "MigrationResult",
    "Rule",
    "Skipped",
    "check_paths",
    "iter_python_files",
    "migrate_paths",
    "migrate_source",
    "write_file",
    "write_reports",
]
