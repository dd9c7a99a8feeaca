"""``kmx-tune convert``'s core: which files, where each one goes, one file converted
(:func:`convert_file`) and many (:func:`convert_many`, which returns the
:class:`ConvertReport` the command renders)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmx_tune.convert.common import (
    FAILED,
    SKIPPED,
    FileOutcome,
    Options,
    Progress,
    RefusedError,
)
from kmx_tune.convert.kernel import CHUNK_BYTES
from kmx_tune.convert.npy import convert_npy
from kmx_tune.convert.npz import convert_npz
from kmx_tune.convert.outputs import default_output, make_folder, refuse_collisions
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.formats import CHANNELS_FIRST, FORMATS

SCHEMA = "kmx-tune/convert/1"


def _convert_h5(src: Path, final: Path, opts: Options, progress: Progress | None) -> FileOutcome:
    """A Keras model or weights file (by its root attributes) or a dataset file; h5py
    loads only when an HDF5 file is converted."""
    from kmx_tune.convert.h5io import DATA, WEIGHTS, sniff

    kind = sniff(src)
    if kind == DATA:
        from kmx_tune.convert.h5 import convert_h5_data

        return convert_h5_data(src, final, opts, progress)
    from kmx_tune.convert.keras_model import convert_model

    return convert_model(src, final, opts, progress, weights_only=kind == WEIGHTS)


# suffix -> how a file of that kind is converted
_CONVERTERS: dict[str, Callable[[Path, Path, Options, Progress | None], FileOutcome]] = {
    ".npy": convert_npy,
    ".npz": convert_npz,
    ".h5": _convert_h5,  # HDF5 datasets, Keras models and weights files
    ".hdf5": _convert_h5,
}
KINDS = ".npy, .npz, .h5 or .hdf5"


@dataclass(frozen=True)
class ConvertReport:
    """The outcome of one ``kmx-tune convert`` run, a :class:`FileOutcome` per input."""

    to: str
    dry_run: bool
    files: tuple[FileOutcome, ...]

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.files if f.status == FAILED)

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; a single input's own exit code when it failed; 1 when
        any of several inputs failed."""
        failed = self.failed
        if not failed:
            return 0
        if len(self.files) == 1:
            return failed[0].exit_code or 1
        return 1

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "to": self.to,
            "dry_run": self.dry_run,
            "files": [f.to_dict() for f in self.files],
        }


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
    python: str | None = None,
    architecture: str | None = None,
) -> FileOutcome:
    """Convert the image arrays in one ``.npy`` or ``.npz`` file to ``to``.

    The new file goes to ``output`` (default: ``NAME.channels_first.npy`` beside the
    input), or replaces the input with ``in_place=True`` once it is complete, synced
    and verified in full. Each of ``keys`` must name an array in the file unless
    ``require_keys`` is false. A Keras model (.h5) is converted by the Keras of
    ``python`` (default: this interpreter); a weights file needs ``architecture``.
    Raises :class:`kmx_tune.errors.KmxError` with a one-line
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
        python=python,
        architecture=architecture,
    )
    src = Path(path)
    if not os.path.lexists(src):
        raise UsageError(f"{src}: no such file or folder")
    suffix = src.suffix.lower()
    convert = _CONVERTERS.get(suffix)
    if convert is None:
        raise UsageError(f"{src}: not a {KINDS} file")
    return convert(src, _final_path(src, output, opts), opts, progress)


def _final_path(src: Path, output: str | os.PathLike[str] | None, opts: Options) -> Path:
    suffix = src.suffix.lower()
    if opts.in_place:
        # a symlink keeps pointing where it did: its target is what gets converted
        return Path(os.path.realpath(src))
    if output is None:
        return default_output(src, opts.to)
    final = Path(output)
    if final.suffix.lower() != suffix:
        raise UsageError(
            f"-o {final}: a {suffix} input gives a {suffix} file; name the output ...{suffix}"
        )
    return final


def expand_inputs(
    paths: Sequence[str | os.PathLike[str]],
    to: str,
    *,
    recursive: bool = False,
    exclude: Path | None = None,
) -> list[Path]:
    """Files named, plus the convertible files inside folders named: directly inside,
    or with ``recursive`` anywhere below (not the outputs of an earlier run to ``to``,
    nor hidden or temporary files, nor anything under ``exclude``)."""
    return [p for p, _ in _inputs(paths, to, recursive, exclude)]


def _inputs(
    paths: Sequence[str | os.PathLike[str]], to: str, recursive: bool, exclude: Path | None
) -> list[tuple[Path, Path | None]]:
    """Each input, and the path relative to the folder it was found in (None: named)."""
    from kmx_tune.convert.folders import walk

    found: list[tuple[Path, Path | None]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found += [
                (c, c.relative_to(p))
                for c in walk(p, _CONVERTERS, to, recursive=recursive, exclude=exclude)
            ]
        else:
            found.append((p, None))
    return found


def output_paths(
    inputs: Sequence[Path],
    output: str | os.PathLike[str] | None,
    to: str,
    *,
    folder: bool,
    relative: Sequence[Path | None] | None = None,
    make: bool = True,
) -> list[Path | None]:
    """Where each input goes: ``None`` (beside it), or under ``-o``: the file itself
    for one file, a folder (made if need be, unless not ``make``) for several files or a
    folder input; a file found below a folder keeps its place in the tree (``relative``
    to it)."""
    if output is None:
        return [None] * len(inputs)
    out = Path(output)
    if folder or len(inputs) > 1 or out.is_dir() or str(output).endswith(os.sep):
        if out.exists() and not out.is_dir():
            raise UsageError(f"-o {out}: several inputs need a folder there, and it is a file")
        if not out.exists() and out.suffix.lower() in _CONVERTERS:
            raise UsageError(
                f"-o {out}: several inputs need a folder, not a file name; "
                "name a folder (-o converted/)"
            )
        if make:
            make_folder(out)
        rels = relative or [None] * len(inputs)
        dests: list[Path | None] = []
        for p, rel in zip(inputs, rels):
            where = out / rel.parent if rel is not None else out
            if make:
                make_folder(where)
            dests.append(where / default_output(p, to).name)
        return dests
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
            if not stat.S_ISREG(os.stat(src).st_mode):  # a FIFO would block the open
                return
        except OSError:
            return
        if src.suffix.lower() in (".h5", ".hdf5"):
            from kmx_tune.convert.h5io import dataset_names

            try:
                names.update(dataset_names(src))
            except (OSError, ValueError, RuntimeError):
                return
            continue
        try:
            with zipfile.ZipFile(src) as zf:
                names.update(
                    n[:-4] if n.endswith(".npy") else n
                    for n in (i.orig_filename for i in zf.infolist())
                )
        except (OSError, zipfile.BadZipFile, ValueError):
            return
    missing = sorted(set(keys) - names)
    if missing:
        raise UsageError(
            f"--key {missing[0]}: none of the {len(inputs)} files has an array of that name; "
            "see their arrays with --dry-run"
        )


@dataclass(frozen=True)
class _Task:
    """One input of a run, as handed to a worker process (picklable)."""

    src: Path
    out: Path | None
    options: dict[str, Any]


def _convert_task(task: _Task, progress: Progress | None = None) -> FileOutcome:
    """:func:`convert_file` for one task; a failure becomes a FAILED outcome."""
    try:
        return convert_file(task.src, task.out, progress=progress, **task.options)
    except RefusedError as exc:  # every array's plan, for --dry-run and --json
        return FileOutcome(
            str(task.src), FAILED, exc.plans, message=str(exc), exit_code=exc.exit_code
        )
    except KmxError as exc:
        return FileOutcome(str(task.src), FAILED, message=str(exc), exit_code=exc.exit_code)
    except OSError as exc:  # an I/O error mid-way (EIO, a vanished folder, ...)
        msg = f"{task.src}: {exc.strerror or exc}; the source is untouched"
        return FileOutcome(str(task.src), FAILED, message=msg, exit_code=1)


def _already_done(task: _Task, opts: dict[str, Any]) -> FileOutcome | None:
    """A resumed folder run: the output exists and records that it is this source,
    converted with these options, complete and verified (:mod:`.record`)."""
    from kmx_tune.convert import record

    final = task.out if task.out is not None else default_output(task.src, opts["to"])
    if opts["force"] or opts["in_place"] or not final.is_file():
        return None
    if not record.matches(
        final,
        task.src,
        to=opts["to"],
        keys=opts["keys"],
        add_channel_axis=opts["add_channel_axis"],
    ):
        return None
    from kmx_tune import fsio

    # a run killed between linking its output into place and removing the temporary
    # name leaves that name behind: the output is complete, the leftover goes
    removed = fsio.clean_stale_temps(final)
    return FileOutcome(
        str(task.src),
        SKIPPED,
        output=str(final),
        message="already converted: the output is complete and was verified when written",
        removed_temps=tuple(str(p) for p in removed),
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
    python: str | None = None,
    architecture: str | None = None,
    recursive: bool = False,
    jobs: int | None = None,
) -> ConvertReport:
    """:func:`convert_file` for each input; a file that fails becomes a FAILED
    outcome with its one-line message, and the others still convert. Files found in
    folders (``recursive``: the whole tree) whose output is already complete and
    verified are SKIPPED, so an interrupted run resumes. ``jobs``: worker processes
    (default: :func:`.folders.default_jobs`). Raises
    :class:`kmx_tune.errors.UsageError` for arguments that fit no input."""
    from kmx_tune.convert.folders import default_jobs, run_all

    if in_place and output is not None:
        raise UsageError("--in-place and -o do not go together; pick one")
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs {jobs}: give 1 or more worker processes")
    exclude = Path(output) if output is not None else None
    found = _inputs(paths, to, recursive, exclude)
    inputs = [p for p, _ in found]
    if not inputs:
        raise UsageError(f"no {KINDS} files found in the paths given")
    if keys and len(inputs) > 1:
        _check_keys_somewhere(inputs, keys)
    folder = any(Path(p).is_dir() for p in paths)
    relative = [r for _, r in found]
    outs = output_paths(inputs, output, to, folder=folder, relative=relative, make=False)
    refuse_collisions(inputs, outs, to, in_place)
    if not dry_run:  # make the -o folders
        output_paths(inputs, output, to, folder=folder, relative=relative)
    options: dict[str, Any] = {
        "to": to,
        "keys": tuple(keys),
        "add_channel_axis": add_channel_axis,
        "verify": verify,
        "force": force,
        "in_place": in_place,
        "dry_run": dry_run,
        "require_keys": len(inputs) == 1,
        "python": python,
        "architecture": architecture,
    }
    tasks = [_Task(src, out, options) for src, out in zip(inputs, outs)]
    outcomes: list[FileOutcome | None] = [None] * len(tasks)
    todo: list[int] = []
    for i, ((_, rel), task) in enumerate(zip(found, tasks)):
        skipped = _already_done(task, options) if rel is not None and not dry_run else None
        if skipped is not None:
            outcomes[i] = skipped
        else:
            todo.append(i)
    if jobs is None:
        jobs = default_jobs([_size(tasks[i].src) for i in todo])
    if jobs <= 1:
        for i in todo:
            progress = on_start(tasks[i].src) if on_start else None
            outcomes[i] = _convert_task(tasks[i], progress)
    else:
        done = run_all(_convert_task, [tasks[i] for i in todo], jobs)
        for i, outcome in zip(todo, done):
            outcomes[i] = outcome
    return ConvertReport(to, dry_run, tuple(o for o in outcomes if o is not None))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


__all__ = [
    "SCHEMA",
    "ConvertReport",
    "convert_file",
    "convert_many",
    "default_output",
    "expand_inputs",
    "output_paths",
]
