"""The MXNet wheel table and the advisor.

- :mod:`.table`: one row per wheel (flavor, release, platform), each citing its source;
- :mod:`.gpu`: which code a GPU runs, which CUDA a driver runs, build routes;
- :mod:`.cuda_libs`: the CUDA libraries each flavor needs and where they come from;
- :mod:`.advisor`: ``recommend(hardware, python)``, the one function that decides;
  :mod:`.model` what it returns, :mod:`.explain` why a GPU box gets the CPU build.

A new fact about a wheel is one row in :mod:`.table`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from kmx_tune import versions
from kmx_tune.errors import UsageError
from kmx_tune.flavors.advisor import recommend
from kmx_tune.flavors.model import (
    Choice,
    Recommendation,
    platform_of,
    platform_of_target,
    requirements_for,
)
from kmx_tune.flavors.table import (
    LINUX_X86_64,
    NUMPY_PIN,
    PY_NEWEST_KERAS_MXNET,
    PY_NEWEST_NUMPY_PIN,
    WHEELS,
    Wheel,
    find_wheel,
)

__all__ = [
    "FLAVORS",
    "NUMPY_PIN",
    "PY_NEWEST_KERAS_MXNET",
    "PY_NEWEST_NUMPY_PIN",
    "Choice",
    "Recommendation",
    "Wheel",
    "find_wheel",
    "get_flavor",
    "platform_of",
    "platform_of_target",
    "platform_of_target",
    "recommend",
    "requirements_for",
    "wheel_for",
]


def _newest_per_name() -> dict[str, Wheel]:
    """Each flavor's newest row, preferring Linux x86-64 (where every flavor exists)."""
    table: dict[str, Wheel] = {}
    for row in WHEELS:
        old = table.get(row.name)
        linux_first = old is not None and old.platform != LINUX_X86_64 == row.platform
        newer = (
            old is not None
            and old.platform == row.platform
            and (versions.key(row.version) > versions.key(old.version))
        )
        if old is None or linux_first or newer:
            table[row.name] = row
    return table


# name -> the flavor's newest Linux x86-64 row
FLAVORS: Mapping[str, Wheel] = MappingProxyType(_newest_per_name())


def get_flavor(name: str, platform: str | None = None) -> Wheel:
    """The newest row of flavor *name* (on *platform* when given and it exists there).
    UsageError listing the valid names otherwise."""
    key = re.sub(r"[-_.]+", "-", name.strip()).lower()
    if key in FLAVORS:
        if platform is not None:
            rows = [w for w in WHEELS if w.name == key and w.platform == platform]
            if rows:
                return max(rows, key=lambda w: versions.key(w.version))
        return FLAVORS[key]
    hint = ""
    match = re.fullmatch(r"mxnet-(cu\d+)-mkl", key)
    if match and f"mxnet-{match.group(1)}mkl" in FLAVORS:
        hint = f" (the package is mxnet-{match.group(1)}mkl, without the second dash)"
    names = ", ".join(FLAVORS)
    raise UsageError(f"unknown MXNet flavor {name!r}{hint}; valid names: {names}")


def wheel_for(name: str, version: str, platform: str = LINUX_X86_64) -> Wheel | None:
    """The table's row for this release of *name* on *platform*; when the release itself
    is not in the table (an older one), None."""
    return find_wheel(re.sub(r"[-_.]+", "-", name).lower(), version, platform)
