"""The one result protocol every command follows.

A command's core call returns a frozen dataclass that renders itself as JSON (with a
``"schema"`` naming its kind and version) and computes its own exit status; the
command prints it as text or JSON (:func:`kmx_tune.render.finish`). An error raised
instead (:class:`kmx_tune.errors.KmxError`) becomes one ``Error:`` line on stderr and,
under ``--json``, the same error as JSON on stdout (:func:`error_json`), for every
command alike.
"""

from __future__ import annotations

from typing import Any, Protocol

ERROR_SCHEMA = "kmx-tune/error/1"


class Result(Protocol):
    """What a command's core call returns."""

    @property
    def exit_code(self) -> int:
        """0 for success; 1 for "it ran and found or hit a problem"; 2 for bad input."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The JSON form, with a ``"schema"`` key such as ``"kmx-tune/doctor/1"``."""
        ...


def error_json(
    message: str, exit_code: int, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON form of an error, whichever command raised it; *details*: facts a
    script may want (the file concerned, say), when the command has them."""
    data: dict[str, Any] = {"schema": ERROR_SCHEMA, "error": message, "exit_code": exit_code}
    if details:
        data["details"] = details
    return data
