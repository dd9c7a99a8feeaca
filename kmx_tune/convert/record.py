"""What makes an output "complete and verified" after the run that wrote it is gone:
a record on the output file itself, in an extended attribute.

The converter writes the record on its temporary file after the output passed its
check and just before the rename, so the record and the file appear together: a file
under the final name with a record is complete (the rename is atomic) and was checked
against that source. The record holds the source's size, mtime and inode and the
options that shape the output; a resumed folder run skips an output whose record
still matches, and redoes nothing else. Where the file system keeps no user extended
attributes (some network file systems, tmpfs before Linux 6.6), nothing is recorded
and such outputs are reported as existing, as they always were.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection
from pathlib import Path

ATTR = "user.kmx-tune.convert"
VERSION = 1


def _describe(
    src: Path, to: str, keys: Collection[str], add_channel_axis: bool
) -> dict[str, object]:
    st = os.stat(src)
    return {
        "v": VERSION,
        "src_size": st.st_size,
        "src_mtime_ns": st.st_mtime_ns,
        "src_ino": st.st_ino,
        "to": to,
        "keys": sorted(keys),
        "add_channel_axis": add_channel_axis,
    }


def write(out: Path, src: Path, *, to: str, keys: Collection[str], add_channel_axis: bool) -> bool:
    """Record on ``out`` (complete, synced, checked) that it is ``src`` converted with
    these options. False where the file system keeps no extended attributes."""
    data = _describe(src, to, keys, add_channel_axis)
    st = os.stat(out)
    data.update(out_size=st.st_size, out_mtime_ns=st.st_mtime_ns)
    try:
        os.setxattr(out, ATTR, json.dumps(data, sort_keys=True).encode())
    except (OSError, AttributeError):  # no user xattrs here (or not Linux)
        return False
    return True


def matches(
    out: Path, src: Path, *, to: str, keys: Collection[str], add_channel_axis: bool
) -> bool:
    """Whether ``out`` holds a record of being ``src`` converted with these options,
    and neither file changed since."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        data = json.loads(os.getxattr(out, ATTR))
        st = os.stat(out)
        expect = _describe(src, to, keys, add_channel_axis)
        expect.update(out_size=st.st_size, out_mtime_ns=st.st_mtime_ns)
        return bool(data == expect)
    return False


__all__ = ["ATTR", "matches", "write"]
