"""Where outputs go: the default name beside the input, the ``-o`` folders (made, or
one line saying why not), and the collisions refused before anything is written."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import FORMATS


def default_output(path: Path, to: str) -> Path:
    """``NAME.channels_first.npy`` beside ``NAME.npy``; a ``.channels_last`` part is
    replaced rather than stacked, so a round trip gets its first name back."""
    stem = path.stem
    for fmt in FORMATS:
        if stem.endswith("." + fmt):
            stem = stem[: -len(fmt) - 1]
    return path.with_name(f"{stem}.{to}{path.suffix}")


def make_folder(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = {
            errno.ENOTDIR: "a part of that path is a file, not a folder",
            errno.EEXIST: "something that is not a folder is in the way",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise KmxError(
            f"-o {out}: cannot create the folder: {why}; nothing was written; "
            "name a folder that can be made there"
        ) from None


def refuse_collisions(
    inputs: Sequence[Path], outs: Sequence[Path | None], to: str, in_place: bool
) -> None:
    """Before anything is written: no two inputs may end in the same file (the second
    would overwrite the first, even with --force), nor one file be named twice. (An
    output that is also an input, as in a glob over a folder already converted once,
    is left to --force as ever: it is refused as existing, or replaced when told.)"""
    if len(inputs) < 2:
        return
    where: dict[str, tuple[Path, Path]] = {}  # real output path -> (input, output as named)
    for src, out in zip(inputs, outs):
        final = Path(os.path.realpath(src)) if in_place else out or default_output(src, to)
        key = os.path.realpath(src) if in_place else _real(final)
        if not in_place and key == os.path.realpath(src):
            continue  # named as its own output: nothing to do, or refused on its own
        if key in where:
            first = where[key][0]
            if os.path.realpath(first) == os.path.realpath(src):
                raise UsageError(
                    f"{src}: the same file is named twice ({first} and {src}); "
                    "nothing was written; name each file once"
                )
            raise UsageError(
                f"{first} and {src} would both be written to {final}; nothing was written; "
                "give them different -o folders or convert them one at a time"
            )
        where[key] = (src, final)


def _real(path: Path) -> str:
    """The path an output will have: its folder resolved, the name as it is (an output
    that is a symlink is replaced, not followed)."""
    return os.path.join(os.path.realpath(path.parent), path.name)


__all__ = ["default_output", "make_folder", "refuse_collisions"]
