"""Output shared by every command: rich consoles that colour only on a terminal and
honour NO_COLOR, plain JSON on stdout for ``--json``, and the one rule for text that
comes from outside (file names, array names, what pip or a user's script printed):
it is data, never markup, and never reaches the terminal with raw control characters.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

    from kmx_tune.result import Result

R = TypeVar("R", bound="Result")

# C0 controls but tab and newline, DEL, and C1 controls (a lone \x9b is a CSI on some
# terminals): what could move the cursor, retitle the window or hide text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_char(match: re.Match[str]) -> str:
    char = match.group(0)
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def safe(text: object, *, one_line: bool = False) -> str:
    """*text* with control characters written as escapes (``\\x1b``); with *one_line*,
    newlines, carriage returns and tabs as well."""
    pattern = _CONTROL_LINE if one_line else _CONTROL
    return pattern.sub(_escape_char, str(text))


def plain(text: object, *, one_line: bool = False) -> str:
    """*text* made safe to embed in a rich markup string: control characters escaped
    (:func:`safe`) and square brackets no longer read as markup."""
    from rich.markup import escape

    return escape(safe(text, one_line=one_line))


def console(stderr: bool = False) -> Console:
    """A rich console. Rich itself turns colour off when the stream is not a
    terminal and when NO_COLOR is set (https://no-color.org)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Print machine-readable output: plain JSON, no markup, one trailing newline.
    Strings are JSON-escaped, so control characters cannot reach the terminal."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def finish(result: R, as_json: bool, render_text: Callable[[R], None]) -> NoReturn:
    """Show *result* (as JSON with ``--json``, else as text) and exit with the status
    the result itself computes."""
    import click

    if as_json:
        emit_json(result.to_json())
    else:
        render_text(result)
    raise click.exceptions.Exit(result.exit_code)
