"""What a tolerant reading of a broken keras.json can still recover.

Keras reads a keras.json that is not valid JSON as ``{}``, so ``set-format --force``
must write a new one; a trailing comma should not cost the user every other key.
:func:`salvage` reads the top-level object one key and value at a time with the
standard JSON decoder, skipping what JSON forbids *between* pairs (trailing and doubled
commas, a missing comma) and stopping at the first pair it cannot read: everything
before that point is kept, the rest is named in the warning (and stays in the backup).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_WHITESPACE = " \t\n\r\ufeff"  # JSON's whitespace, and a byte-order mark at the start


@dataclass(frozen=True)
class Salvage:
    """The pairs that could be read, in order, and where reading stopped."""

    values: dict[str, Any]
    dropped_at: tuple[int, int] | None  # (line, column) of the first text not kept
    dropped_chars: int = 0

    def describe(self, kept_in: object) -> str:
        """``kept its keys a, b; dropped what it could not read from line L column C
        (N characters, kept in BACKUP)``, for the warning."""
        if self.values:
            kept = "kept its keys " + ", ".join(self.values)
        else:
            kept = "kept no keys: none could be read"
        if self.dropped_at is None:
            return kept
        line, col = self.dropped_at
        return (
            f"{kept}; dropped what it could not read from line {line} column {col} "
            f"({self.dropped_chars} characters, kept in {kept_in})"
        )


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _skip(text: str, index: int, also: str = "") -> int:
    while index < len(text) and (text[index] in _WHITESPACE or text[index] in also):
        index += 1
    return index


def salvage(text: str) -> Salvage:
    """The key/value pairs of the top-level object in *text* that can be read."""
    decoder = json.JSONDecoder()
    values: dict[str, Any] = {}
    i = _skip(text, 0)
    if i >= len(text) or text[i] != "{":
        rest = len(text) - i
        return Salvage({}, _position(text, i) if rest else None, rest)
    i += 1
    while True:
        i = _skip(text, i, ",")
        if i >= len(text):
            return Salvage(values, None)  # unterminated: everything read was kept
        if text[i] == "}":
            end = _skip(text, i + 1)
            rest = len(text) - end
            return Salvage(values, _position(text, end) if rest else None, rest)
        try:
            key, j = decoder.raw_decode(text, i)
            j = _skip(text, j)
            if not isinstance(key, str) or j >= len(text) or text[j] != ":":
                raise ValueError("not a key")
            value, k = decoder.raw_decode(text, _skip(text, j + 1))
        except (ValueError, RecursionError):
            return Salvage(values, _position(text, i), len(text) - i)
        values[key] = value
        i = k
