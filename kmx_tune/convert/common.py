"""What converting a .npy and converting a .npz share: the options, the outcome of one
file, and the checks both make on the input, before writing, and after it."""

from __future__ import annotations

import dataclasses
import errno
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
from kmx_tune.convert.kernel import CHUNK_BYTES, MappedSource, Source, blocks_at
from kmx_tune.convert.npyio import (
    MAGIC,
    PREFIX_LEN,
    FormatError,
    NpyHeader,
    check_size,
    header_length,
    parse_header,
)
from kmx_tune.convert.writer import check_free_space, check_writable, publish_output
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


SHOWN = 3  # refused arrays named in an error line; the rest are counted (--json has all)
SHOWN_NAMES = 10  # array names listed after a --key typo


class RefusedError(KmxError):
    """Arrays that cannot be converted as they are; ``plans`` has every array's plan, so a
    dry run and --json can show them all while the message stays one short line."""

    def __init__(self, path: Path, plans: Sequence[L.ArrayPlan]) -> None:
        super().__init__(refusal_message(path, plans))
        self.plans = tuple(plans)


def refusal_message(path: Path, plans: Sequence[L.ArrayPlan]) -> str:
    """One line, however many arrays are refused: the first few, and how many more."""
    refused = [p for p in plans if p.action == L.REFUSE]
    parts = "; ".join(f"'{p.name}' {tuple(p.shape)}: {p.note}" for p in refused[:SHOWN])
    if len(refused) > SHOWN:
        parts += f"; and {len(refused) - SHOWN} more (all of them: --dry-run)"
    return f"{path}: refused {len(refused)} array(s), nothing written: {parts}"


def check_keys(src: Path, names: Sequence[str], opts: Options) -> None:
    """A ``--key`` that names no array is a typo: say so, with (the first few of) the
    names there are."""
    if not opts.require_keys:
        return
    missing = sorted(opts.keys - set(names))
    if missing:
        listed = ", ".join(names[:SHOWN_NAMES]) or "(none)"
        if len(names) > SHOWN_NAMES:
            listed += f", and {len(names) - SHOWN_NAMES} more (all of them: --dry-run)"
        raise UsageError(
            f"--key {missing[0]}: {src} has no array of that name; its arrays: {listed}"
        )


def open_regular(path: Path) -> tuple[int, int]:
    """The file open for reading, and its size; refused unless a non-empty regular file.
    Opened without blocking: a FIFO or a device is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO's other end
            raise UsageError(f"{path}: not a regular file") from None
        raise KmxError(f"{path}: cannot read it: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise UsageError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
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


def trailing_data(fd: int, size: int, header: NpyHeader, where: str) -> str:
    """What lies after the array of the .npy open as ``fd``, said as the error to stop
    with (converting would drop it); "" when nothing does."""
    end = header.data_offset + header.nbytes
    if header.dtype.hasobject or end >= size:
        return ""
    arrays, pos = 0, end
    while pos < size and arrays < 10_000:  # further np.save calls on the same file
        prefix = os.pread(fd, PREFIX_LEN, pos)
        if not prefix.startswith(MAGIC):
            break
        try:
            _, hlen = header_length(prefix, where)
            h = parse_header(os.pread(fd, hlen, pos), where)
        except FormatError:
            break
        if h.dtype.hasobject or pos + h.data_offset + h.nbytes > size:
            break
        arrays, pos = arrays + 1, pos + h.data_offset + h.nbytes
    keep = "kmx-tune converts one array per .npy and would drop the rest, so nothing was written"
    if arrays:
        what = f"{arrays} more array{'s' if arrays > 1 else ''} after the first"
        if pos < size:
            what += f", then {size - pos} bytes that are not an array"
        return (
            f"{where}: holds {what} ({arrays + 1} np.save calls to one open file?); {keep}; "
            "load them with repeated np.load(f) and save each to its own .npy (or all in "
            "one .npz with np.savez)"
        )
    return (
        f"{where}: has {size - end} bytes after the array that are not part of it; converting "
        f"would drop them, so nothing was written; if they are not needed, cut the file to "
        f"its first {end} bytes (truncate -s {end} FILE), else keep them elsewhere first"
    )


def member_trailing_note(extra: int) -> str:
    """The refusal of an .npz member with ``extra`` bytes after its array."""
    return (
        f"{extra} bytes after the array in this member (another np.save to the same file?): "
        "converting would drop them; save that array again on its own"
    )


def check_output(src: Path, final: Path, opts: Options) -> None:
    """Whether ``final`` may be written for ``src``, before anything is."""
    if opts.in_place:
        links = os.stat(final).st_nlink
        if links > 1:
            others = "the other name" if links == 2 else f"the other {links - 1} names"
            raise KmxError(
                f"{src}: the file has {links} hard links; --in-place would give the converted "
                f"data to this name only and leave the old data under {others}; nothing was "
                "written; convert to a new file instead (drop --in-place, or -o FILE)"
            )
    else:
        if os.path.realpath(final) == os.path.realpath(src):
            raise UsageError(
                f"{final}: the output would replace the input; use --in-place for that"
            )
        if os.path.lexists(final) and not opts.force:
            raise KmxError(f"{final} exists; pass --force to overwrite it")
        if not final.parent.is_dir():
            raise UsageError(f"{final.parent}: no such folder for the output; create it first")
    check_writable(final.parent)


def prepare_output(src: Path, final: Path, opts: Options, need: int) -> list[Path]:
    """Before writing ``need`` bytes to ``final``: may it be written, is there room.
    Removes what interrupted runs left for it, and returns those paths."""
    check_output(src, final, opts)
    removed = fsio.clean_stale_temps(final)
    check_free_space(final.parent, need)
    return removed


def dry_run(planned: FileOutcome, src: Path, final: Path, opts: Options) -> FileOutcome:
    """The outcome of a dry run: what is planned, and what the real run would say about
    its output (it exists, it could not be written)."""
    note = ""
    if not opts.in_place and os.path.lexists(final):
        if not opts.force:
            note = f"{final} exists: the real run refuses it without --force"
        elif os.path.realpath(final) != os.path.realpath(src):
            note = f"{final} exists: --force replaces it"
    if not note and final.parent.is_dir():  # a missing -o folder is made by the real run
        try:
            check_output(src, final, opts)
        except KmxError as exc:
            note = f"the real run would stop here: {exc}"
    return dataclasses.replace(planned, message=note)


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
    """Compare the output with the source, transposed, block by block: every byte
    (``full``), or a few sampled rows: the first, the middle and the last."""
    mismatch = KmxError(f"{where}: the output does not match the source; nothing was replaced")
    flat = out.array.reshape(-1).view(np.uint8) if out.array.size else np.empty(0, np.uint8)
    rows = None
    if not full:
        n = out.array.shape[0] if out.array.ndim else 1
        rows = sorted({0, n // 2, n - 1}) if n else []
    seen = 0
    for pos, block in blocks_at(src, rperm, CHUNK_BYTES, rows):
        expect = np.ascontiguousarray(block).reshape(-1).view(np.uint8)
        if not np.array_equal(flat[pos : pos + expect.size], expect):
            raise mismatch
        seen += expect.size
        out.release()
    if full and seen != flat.size:
        raise mismatch


__all__ = [
    "CONVERTED",
    "FAILED",
    "NOTHING_TO_DO",
    "PLANNED",
    "SKIPPED",
    "FileOutcome",
    "Options",
    "Progress",
    "RefusedError",
    "check_keys",
    "check_output",
    "converted",
    "dry_run",
    "member_trailing_note",
    "open_regular",
    "prepare_output",
    "publish",
    "read_npy_header",
    "refusal_message",
    "trailing_data",
    "verify_data",
]
