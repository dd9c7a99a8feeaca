"""The data files that model code names: where such a file is, and which of its arrays
are images in a given layout.

A file is looked for where the script would find it when run from its own folder or
from the current one. Its arrays are read from the headers only, by kmx-tune convert's
dry run (so the answer is what ``kmx-tune convert`` would do, and nothing is unpickled
or loaded); a file convert cannot read is "cannot tell".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from kmx_tune.formats import FORMATS


def find(name: str, folder: Path | None) -> Path | None:
    """The regular file *name* (as written in the code) beside the script or in the
    current folder; None when there is none."""
    given = Path(name).expanduser()
    candidates = [given] if given.is_absolute() else []
    if not given.is_absolute():
        if folder is not None:
            candidates.append(folder / given)
        candidates.append(Path.cwd() / given)
    for candidate in candidates:
        try:
            if stat.S_ISREG(os.stat(candidate).st_mode):
                return candidate
        except (OSError, ValueError):
            continue
    return None


def arrays_in(
    file: Path, layout: str, key: str | None = None
) -> tuple[tuple[str, str], ...] | None:
    """(name, shape) of the image arrays in *file* (only *key*, if given) that are in
    *layout*; () when none is; None when the file cannot be read as data."""
    from kmx_tune.convert import convert_file
    from kmx_tune.errors import KmxError

    other = next(f for f in FORMATS if f != layout)
    try:
        # converting in place, dry run: plans only, for any file convert can read
        outcome = convert_file(file, to=other, dry_run=True, in_place=True, require_keys=False)
    except (KmxError, OSError, ValueError):
        return None
    return tuple(
        (a.name, "(" + ", ".join(str(n) for n in a.shape) + ")")
        for a in outcome.arrays
        if a.layout == layout and (key is None or a.name == key)
    )


def names_layout(name: str, layout: str) -> bool:
    """Whether the file name says it holds *layout* data: ``x.channels_first.npz``."""
    return Path(name).stem.endswith("." + layout)


def converted_name(name: str, layout: str) -> str:
    """The name ``kmx-tune convert`` gives the output for *name*, as written in the code
    (``data.npz`` -> ``data.channels_first.npz``)."""
    from kmx_tune.convert.core import default_output

    head, sep, base = name.rpartition("/")
    return head + sep + default_output(Path(base), layout).name


def shown(path: Path) -> str:
    """*path* as a command line would name it: relative below the current folder,
    absolute elsewhere."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
