"""Output helpers shared by every command: rich consoles that colour only on a
terminal and honour NO_COLOR, and plain JSON on stdout for ``--json``."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A rich console. Rich itself turns colour off when the stream is not a
    terminal and when NO_COLOR is set (https://no-color.org)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Print machine-readable output: plain JSON, no markup, one trailing newline."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
