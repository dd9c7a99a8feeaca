"""What converting a .npy and converting a .npz share: the options, the outcome of one
file, and the checks both make on the input, before writing, and after it."""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kmx_tune import fsio
from kmx_tune.convert import layout as L
from kmx_tune.convert import record
from kmx_tune.convert.kernel import CHUNK_BYTES, MappedSource, Source, source_blocks
from kmx_tune.convert.npyio import (
    PREFIX_LEN,
    FormatError,
    NpyHeader,
    check_size,
    header_length,
    parse_header,
)
from kmx_tune.convert.writer import check_free_space, publish_output
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

CONVERTED = "converted"
NOTHING_TO_DO = "nothing_to_do"
PLANNED = "planned"  # --dry-run
FAILED = "failed"
SKIPPED = "skipped"  # a folder run found the output complete and verified: resumed


@dataclass(frozen=True)
class Options:
    to: str = CHANNELS_FIRST
    keys: frozenset[str] = frozenset()
    add_channel_axis: bool = False
    verify: bool = False
    force: bool = False
    in_place: bool = False
    dry_run: bool = False
    chunk_bytes: int = CHUNK_BYTES
    require_keys: bool = True  # every --key must name an array in this file
    python: str | None = None  # --python: the interpreter whose Keras converts a model
    architecture: str | None = None  # --architecture: model.to_json() for a weights file


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one input file."""

    path: str
    status: str
    arrays: tuple[L.ArrayPlan, ...] = ()
    output: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    verified: str = ""  # "full", "sampled" or "" (nothing written)
    message: str = ""
    removed_temps: tuple[str, ...] = field(default=())
    exit_code: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "status": self.status,
            "output": self.output,
            "arrays": [a.to_dict() for a in self.arrays],
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "seconds": round(self.seconds, 3),
            "verified": self.verified,
            "message": self.message,
            "removed_temps": list(self.removed_temps),
        }


def refusal_message(path: Path, plans: Sequence[L.ArrayPlan]) -> str:
    refused = [p for p in plans if p.action == L.REFUSE]
    parts = "; ".join(f"'{p.name}' {tuple(p.shape)}: {p.note}" for p in refused)
    return f"{path}: refused {len(refused)} array(s), nothing written: {parts}"


def check_keys(src: Path, names: Sequence[str], opts: Options) -> None:
    """A ``--key`` that names no array is a typo: say so, with the names there are."""
    if not opts.require_keys:
        return
    missing = sorted(opts.keys - set(names))
    if missing:
        raise UsageError(
            f"--key {missing[0]}: {src} has no array of that name; "
            f"its arrays: {', '.join(names) or '(none)'}"
        )


def open_regular(path: Path) -> tuple[int, int]:
    """The file open for reading, and its size; refused unless a non-empty regular file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise KmxError(f"{path}: cannot read it: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError(f"{path}: not a regular file")
    if st.st_size == 0:
        os.close(fd)
        raise FormatError(f"{path}: the file is empty (0 bytes); save the data to it again")
    return fd, st.st_size


def read_npy_header(fd: int, size: int, where: str) -> NpyHeader:
    prefix = os.pread(fd, PREFIX_LEN, 0)
    if prefix.startswith(b"PK\x03\x04"):
        raise FormatError(f"{where}: this is an .npz (zip) archive, not a .npy; rename it to .npz")
    _, offset = header_length(prefix, where)
    header = parse_header(os.pread(fd, offset, 0), where)
    if not header.dtype.hasobject:  # pickled data has no fixed size; it is refused anyway
        check_size(header, size, where)
    return header


def prepare_output(src: Path, final: Path, opts: Options, need: int) -> list[Path]:
    """Before writing ``need`` bytes to ``final``: may it be written, is there room.
    Removes what interrupted runs left for it, and returns those paths."""
    if not opts.in_place:
        if final.resolve() == src.resolve():
            raise UsageError(
                f"{final}: the output would replace the input; use --in-place for that"
            )
        if final.exists() and not opts.force:
            raise KmxError(f"{final} exists; pass --force to overwrite it")
        if not final.parent.is_dir():
            raise UsageError(f"{final.parent}: no such folder for the output; create it first")
    removed = fsio.clean_stale_temps(final)
    check_free_space(final.parent, need)
    return removed


def publish(tmp: Path, src: Path, final: Path, opts: Options) -> None:
    """Give the checked output its final name (taking the mode of the input it replaces
    with ``--in-place``)."""
    if not opts.in_place:  # lets a folder run skip this output when it resumes
        record.write(tmp, src, to=opts.to, keys=opts.keys, add_channel_axis=opts.add_channel_axis)
    publish_output(
        tmp,
        final,
        overwrite=opts.force or opts.in_place,
        like=src if opts.in_place else None,
    )


def converted(
    planned: FileOutcome, written: int, t0: float, opts: Options, removed: Sequence[Path]
) -> FileOutcome:
    """The outcome of a conversion that wrote ``written`` bytes, started at ``t0``."""
    return dataclasses.replace(
        planned,
        status=CONVERTED,
        bytes_out=written,
        seconds=time.perf_counter() - t0,
        verified="full" if opts.verify else "sampled",
        removed_temps=tuple(str(p) for p in removed),
    )


def verify_data(
    src: Source, out: MappedSource, rperm: tuple[int, ...], *, full: bool, where: str
) -> None:
    """Compare the output with the source, transposed: every byte (``full``), or a few
    sampled rows: the first, the middle and the last."""
    mismatch = KmxError(f"{where}: the output does not match the source; nothing was replaced")
    if full:
        flat = out.array.reshape(-1).view(np.uint8) if out.array.size else np.empty(0, np.uint8)
        pos = 0
        for block in source_blocks(src, rperm, CHUNK_BYTES):
            expect = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
            if not np.array_equal(flat[pos : pos + expect.size], expect):
                raise mismatch
            pos += expect.size
            out.release()
        if pos != flat.size:
            raise mismatch
        return
    raw = out.array
    if raw.ndim == 0 or raw.size == 0:
        return
    n = raw.shape[0]
    for i in sorted({0, n // 2, n - 1}):
        if rperm[0] == 0:
            expect = src.rows(i, i + 1).transpose(rperm)[0]
        else:
            expect = src.rows(0, src.raw_shape[0]).transpose(rperm)[i]
        got = raw[i]
        if not np.array_equal(
            np.ascontiguousarray(expect).reshape(-1).view(np.uint8),
            np.ascontiguousarray(got).reshape(-1).view(np.uint8),
        ):
            raise mismatch
        src.release()
        out.release()


__all__ = [
    "CONVERTED",
    "FAILED",
    "NOTHING_TO_DO",
    "PLANNED",
    "SKIPPED",
    "FileOutcome",
    "Options",
    "Progress",
    "check_keys",
    "converted",
    "open_regular",
    "prepare_output",
    "publish",
    "read_npy_header",
    "refusal_message",
    "verify_data",
]
