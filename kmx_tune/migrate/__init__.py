"""Find and rewrite the channels_last assumptions in Keras model code.

The rules work on a concrete syntax tree (libcst), so a rewrite changes only the
tokens it must -- commas, spacing, comments and quotes stay exactly as they were.

Every rewrite is an involution: migrating to channels_first and then back with
``to="channels_last"`` gives the original text. A shape ``(H, W, C)`` is rotated to
``(C, H, W)`` only when the result can be rotated back without doubt; where it
could not (two channel-like numbers), the finding is reported and nothing is
rewritten. Code guarded by ``if K.image_data_format() == ...`` is correct for both
layouts and is never touched, nor are shapes computed from data.
"""

from kmx_tune.migrate.files import iter_python_files, migrate_paths, migrate_source, write_file
from kmx_tune.migrate.model import (
    RULE_CODES,
    RULES,
    CodeFinding,
    FileReport,
    MigrationResult,
    Rule,
)

__all__ = [
    "RULES",
    "RULE_CODES",
    "CodeFinding",
    "FileReport",
    "MigrationResult",
    "Rule",
    "iter_python_files",
    "migrate_paths",
    "migrate_source",
    "write_file",
]
