"""Domain errors. Raised in the core, translated once at the CLI edge into
``Error: <what happened and what to do>`` and an exit code -- never a traceback."""

from __future__ import annotations


class KmxError(Exception):
    """Something the user can act on. The message says what is wrong and what to do.
    *details*: facts for scripts, shown under ``"details"`` in the JSON error."""

    exit_code = 1

    def __init__(self, *args: object, details: dict[str, object] | None = None) -> None:
        super().__init__(*args)
        self.details: dict[str, object] = dict(details or {})


class UsageError(KmxError):
    """Bad arguments or bad input files: exit 2, like click's own usage errors."""

    exit_code = 2


class TargetError(KmxError):
    """The target interpreter is missing, not a Python, or its probe script failed."""

    exit_code = 2
