"""What changed in a target between two of pip's lists."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmx_tune.dists import Distribution

# Never uninstalled by a rollback: removing them could leave no pip to repair with.
PACKAGING_TOOLS = frozenset({"pip", "setuptools", "wheel"})


@dataclass(frozen=True)
class PackageChange:
    name: str
    before: str | None  # None: newly installed
    after: str | None  # None: removed

    def describe(self) -> str:
        if self.before is None:
            return f"+ {self.name} {self.after}"
        if self.after is None:
            return f"- {self.name} {self.before}"
        return f"~ {self.name} {self.before} -> {self.after}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "before": self.before, "after": self.after}


def diff(
    before: Mapping[str, Distribution], after: Mapping[str, Distribution]
) -> tuple[PackageChange, ...]:
    changes = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b is not None and a is not None and b.version == a.version:
            continue
        name = (a or b).name  # type: ignore[union-attr]  # one of them is set
        changes.append(PackageChange(name, b.version if b else None, a.version if a else None))
    return tuple(changes)


def describe(changes: tuple[PackageChange, ...] | list[PackageChange]) -> str:
    return ", ".join(c.describe() for c in changes)
