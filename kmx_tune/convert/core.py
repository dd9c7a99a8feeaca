"""Convert one .npy or .npz file: plan every array, write the new file beside the
old one under a temporary name, check it, then give it its final name."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kmx_tune import fsio
from kmx_tune.convert import layout as L
from kmx_tune.convert.kernel import (
    CHUNK_BYTES,
    MappedSource,
    copy_block,
    raw_permutation,
    source_blocks,
)
from kmx_tune.convert.npyio import (
    PREFIX_LEN,
    FormatError,
    NpyHeader,
    build_header,
    check_size,
    header_length,
    parse_header,
)
from kmx_tune.convert.writer import (
    DirectSink,
    check_free_space,
    open_temp,
    publish_output,
)
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST, FORMATS

Progress = Callable[[int, int], None]  # (bytes done, bytes in all)

CONVERTED = "converted"
NOTHING_TO_DO = "nothing_to_do"
PLANNED = "planned"  # --dry-run
FAILED = "failed"


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
    direct: bool = True  # try O_DIRECT for the output
    require_keys: bool = True  # every --key must name an array in this file


@dataclass(frozen=True)
class FileResult:
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


def default_output(path: Path, to: str) -> Path:
    """``NAME.channels_first.npy`` beside ``NAME.npy``; a ``.channels_last`` part is
    replaced rather than stacked, so a round trip gets its first name back."""
    stem = path.stem
    for fmt in FORMATS:
        if stem.endswith("." + fmt):
            stem = stem[: -len(fmt) - 1]
    return path.with_name(f"{stem}.{to}{path.suffix}")


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


def _open_regular(path: Path) -> tuple[int, int]:
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


def convert_file(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    to: str = CHANNELS_FIRST,
    keys: Collection[str] = (),
    add_channel_axis: bool = False,
    verify: bool = False,
    force: bool = False,
    in_place: bool = False,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    require_keys: bool = True,
) -> FileResult:
    """Convert the image arrays in one ``.npy`` or ``.npz`` file to ``to``.

    The new file goes to ``output`` (default: ``NAME.channels_first.npy`` beside the
    input), or replaces the input with ``in_place=True`` once it is complete, synced
    and verified in full. Each of ``keys`` must name an array in the file unless
    ``require_keys`` is false. Raises :class:`kmx_tune.errors.KmxError` with a one-line
    message for anything that stops the conversion; the source is never modified
    except by that final rename.
    """
    if to not in FORMATS:
        raise UsageError(f"--to must be one of {', '.join(FORMATS)}, not {to!r}")
    if in_place and output is not None:
        raise UsageError("--in-place and -o do not go together; pick one")
    opts = Options(
        to=to,
        keys=frozenset(keys),
        add_channel_axis=add_channel_axis,
        verify=verify or in_place,
        force=force,
        in_place=in_place,
        dry_run=dry_run,
        chunk_bytes=chunk_bytes,
        require_keys=require_keys,
    )
    src = Path(path)
    if not os.path.lexists(src):
        raise UsageError(f"{src}: no such file or folder")
    suffix = src.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise UsageError(f"{src}: not a .npy or .npz file")
    if in_place:
        # a symlink keeps pointing where it did: its target is what gets converted
        final = Path(os.path.realpath(src))
    elif output is not None:
        final = Path(output)
        if final.suffix.lower() != suffix:
            raise UsageError(
                f"-o {final}: a {suffix} input gives a {suffix} file; name the output ...{suffix}"
            )
    else:
        final = default_output(src, to)
    if suffix == ".npy":
        return _convert_npy(src, final, opts, progress)
    from kmx_tune.convert.npz import convert_npz

    return convert_npz(src, final, opts, progress)


def _check_target(src: Path, final: Path, opts: Options) -> None:
    if opts.in_place:
        return
    if final.resolve() == src.resolve():
        raise UsageError(f"{final}: the output would replace the input; use --in-place for that")
    if final.exists() and not opts.force:
        raise KmxError(f"{final} exists; pass --force to overwrite it")
    if not final.parent.is_dir():
        raise UsageError(f"{final.parent}: no such folder for the output; create it first")


def _convert_npy(src: Path, final: Path, opts: Options, progress: Progress | None) -> FileResult:
    t0 = time.perf_counter()
    fd, size = _open_regular(src)
    try:
        header = read_npy_header(fd, size, str(src))
    finally:
        os.close(fd)
    check_keys(src, [src.stem], opts)
    plan = L.plan_array(
        src.stem,
        header.shape,
        header.dtype_str,
        opts.to,
        keys=opts.keys,
        add_channel_axis=opts.add_channel_axis,
        has_object=header.dtype.hasobject,
    )
    if plan.action == L.REFUSE:
        raise KmxError(refusal_message(src, [plan]))
    base = FileResult(str(src), PLANNED, (plan,), str(final), bytes_in=size)
    if plan.action in (L.SKIP, L.COPY):
        return _replace(base, status=NOTHING_TO_DO, output=None, message=plan.note)
    if opts.dry_run:
        return base
    _check_target(src, final, opts)
    removed = fsio.clean_stale_temps(final)
    out_header = build_header(header.dtype, plan.out_shape, header.fortran_order)
    total = len(out_header) + header.nbytes
    check_free_space(final.parent, total)
    perm = plan.perm or tuple(range(len(header.shape)))
    rperm = raw_permutation(perm, header.fortran_order)
    source = MappedSource(src, header.data_offset, header.raw_shape, header.dtype)
    try:
        with open_temp(final) as tmp:
            sink = DirectSink(tmp.fd, final, opts.chunk_bytes)
            try:
                sink.write(out_header)
                done = 0
                for block in source_blocks(source, rperm, opts.chunk_bytes):
                    n = block.nbytes
                    dst = np.frombuffer(sink.reserve(n), header.dtype).reshape(block.shape)
                    copy_block(dst, block)
                    del dst
                    sink.commit(n)
                    done += n
                    if progress:
                        progress(done, header.nbytes)
                written = sink.close()
            except BaseException:
                sink.abort()
                raise
            out = MappedSource(tmp.path, len(out_header), _out_raw(header, rperm), header.dtype)
            try:
                check_npy_output(tmp.path, header, plan.out_shape, written, str(final))
                verify_data(source, out, rperm, full=opts.verify, where=str(final))
            finally:
                out.close()
            publish_output(
                tmp.path,
                final,
                overwrite=opts.force or opts.in_place,
                like=src if opts.in_place else None,
            )
    finally:
        source.close()
    return _replace(
        base,
        status=CONVERTED,
        bytes_out=written,
        seconds=time.perf_counter() - t0,
        verified="full" if opts.verify else "sampled",
        removed_temps=tuple(str(p) for p in removed),
    )


def _replace(r: FileResult, **changes: object) -> FileResult:
    import dataclasses

    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]  # keys are FileResult fields


def _out_raw(header: NpyHeader, rperm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(header.raw_shape[a] for a in rperm)


def check_npy_output(
    path: Path, src: NpyHeader, out_shape: tuple[int, ...], size: int, where: str
) -> None:
    """The cheap check that always runs: header, dtype, shape and size as planned."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_npy_header(fd, os.fstat(fd).st_size, where)
        actual = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if (
        got.dtype != src.dtype
        or got.shape != tuple(out_shape)
        or got.fortran_order != src.fortran_order
        or actual != size
        or size != got.data_offset + got.nbytes
    ):
        raise KmxError(f"{where}: the written file does not match the plan; nothing was replaced")


def verify_data(
    src: MappedSource, out: MappedSource, rperm: tuple[int, ...], *, full: bool, where: str
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


def expand_inputs(paths: Sequence[str | os.PathLike[str]], to: str) -> list[Path]:
    """Files named, plus the .npy/.npz files directly inside folders named (not the
    outputs of an earlier run to ``to``, nor hidden or temporary files)."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for child in sorted(p.iterdir()):
                if (
                    child.is_file()
                    and child.suffix.lower() in (".npy", ".npz")
                    and not child.name.startswith(".")
                    and not child.stem.endswith("." + to)
                ):
                    found.append(child)
        else:
            found.append(p)
    return found


def output_paths(
    inputs: Sequence[Path], output: str | os.PathLike[str] | None, to: str, *, folder: bool
) -> list[Path | None]:
    """Where each input goes: ``None`` (beside it), or under ``-o``: the file itself
    for one file, a folder (made if need be) for several files or a folder input."""
    if output is None:
        return [None] * len(inputs)
    out = Path(output)
    if folder or len(inputs) > 1 or out.is_dir() or str(output).endswith(os.sep):
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {out}: several inputs need a folder there, and it is a file")
        if not out.exists() and out.suffix.lower() in (".npy", ".npz"):
            raise UsageError(
                f"-o {out}: several inputs need a folder, not a file name; "
                "name a folder (-o converted/)"
            )
        out.mkdir(parents=True, exist_ok=True)
        return [out / default_output(p, to).name for p in inputs]
    return [out]


def _check_keys_somewhere(inputs: Sequence[Path], keys: Collection[str]) -> None:
    """With several inputs, each ``--key`` must name an array in at least one of them
    (a file that cannot be read is left to fail on its own, later)."""
    import zipfile

    names: set[str] = set()
    for src in inputs:
        if src.suffix.lower() == ".npy":
            names.add(src.stem)
            continue
        try:
            with zipfile.ZipFile(src) as zf:
                names.update(n[:-4] if n.endswith(".npy") else n for n in zf.namelist())
        except (OSError, zipfile.BadZipFile, ValueError):
            return
    missing = sorted(set(keys) - names)
    if missing:
        raise UsageError(
            f"--key {missing[0]}: none of the {len(inputs)} files has an array of that name; "
            "see their arrays with --dry-run"
        )


def convert_many(
    paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str] | None = None,
    *,
    to: str = CHANNELS_FIRST,
    keys: Collection[str] = (),
    add_channel_axis: bool = False,
    verify: bool = False,
    force: bool = False,
    in_place: bool = False,
    dry_run: bool = False,
    on_start: Callable[[Path], Progress | None] | None = None,
) -> list[FileResult]:
    """:func:`convert_file` for each input; a file that fails becomes a FAILED
    result with its one-line message, and the others still convert."""
    if in_place and output is not None:
        raise UsageError("--in-place and -o do not go together; pick one")
    inputs = expand_inputs(paths, to)
    if not inputs:
        raise UsageError("no .npy or .npz files found in the paths given")
    if keys and len(inputs) > 1:
        _check_keys_somewhere(inputs, keys)
    outs = output_paths(inputs, output, to, folder=any(Path(p).is_dir() for p in paths))
    results: list[FileResult] = []
    for src, out in zip(inputs, outs):
        progress = on_start(src) if on_start else None
        try:
            results.append(
                convert_file(
                    src,
                    out,
                    to=to,
                    keys=keys,
                    add_channel_axis=add_channel_axis,
                    verify=verify,
                    force=force,
                    in_place=in_place,
                    dry_run=dry_run,
                    progress=progress,
                    require_keys=len(inputs) == 1,
                )
            )
        except KmxError as exc:
            results.append(FileResult(str(src), FAILED, message=str(exc), exit_code=exc.exit_code))
        except OSError as exc:  # an I/O error mid-way (EIO, a vanished folder, ...)
            msg = f"{src}: {exc.strerror or exc}; the source is untouched"
            results.append(FileResult(str(src), FAILED, message=msg, exit_code=1))
    return results


__all__ = ["FileResult", "FormatError", "convert_file", "convert_many", "default_output"]
