"""The install journal: what an ``install-mxnet`` run found, what it is changing, and
the way back, kept on disk from before the first change until the new MXNet is
verified (or the old state is back), so that a run killed at any moment -- SIGKILL,
a closed terminal, a power cut -- leaves enough for the next run to put things back.

Where: ``<cache>/installs/<key>/`` (``$KMX_TUNE_CACHE_DIR``, else
``$XDG_CACHE_HOME/kmx-tune``, else ``~/.cache/kmx-tune``), where *key* is a hash of
the target's real ``sys.prefix``: ``journal.json`` and ``wheels/`` (the kit). Not
/tmp, which is emptied at boot and by tmp cleaners, and not inside the target
environment: the user running kmx-tune can always write the cache (a system Python's
prefix is root's), pip never touches it, and copying or archiving the venv does not
carry 50 MB of wheels along. ``<key>.lock`` beside it is held (flock) by the run
that changes the target, so two runs never change one environment at once, and a
journal whose lock is free belongs to a run that is gone.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kmx_tune import fsio
from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError
from kmx_tune.install.pip import PipOptions

SCHEMA = "kmx-tune/install-journal/1"
JOURNAL = "journal.json"
WHEELS = "wheels"

# The steps a journal goes through: "uninstalling", "installing", "verifying", then
# "verified" (the install is complete: nothing to put back, and the next run removes
# the journal), or "rolling-back" after a failure; "restoring" under --restore.
VERIFIED = "verified"


def installs_dir() -> Path:
    from kmx_tune.hardware.cpu import cache_dir

    return cache_dir() / "installs"


def target_key(prefix: str) -> str:
    """The name of a target's journal folder: a hash of its real prefix."""
    real = os.path.realpath(prefix)
    return hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def folder_for(prefix: str) -> Path:
    return installs_dir() / target_key(prefix)


def restore_command(python: str, pip: PipOptions | None = None) -> str:
    """The exact command that puts an interrupted install's target back."""
    import shlex

    return shlex.join(
        ["kmx-tune", "install-mxnet", "--python", python, "--restore", *(pip.args() if pip else [])]
    )


# ------------------------------------------------------------------ processes


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ")"
    return stat[stat.rfind(")") + 2 :].split()


def process_start(pid: int) -> str | None:
    """When process *pid* started (clock ticks since boot, from /proc), so that a
    recorded pid is not mistaken for a new process that reuses it; None if unknown."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def process_alive(pid: int, start: str | None) -> bool:
    """Whether the process recorded as (*pid*, *start*) still runs (a zombie, dead
    but not yet reaped by its new parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat_fields(pid)
    if fields is None:
        return start is None  # no /proc: the pid is all there is to go by
    if fields[0] in ("Z", "X"):
        return False
    return start is None or (len(fields) > 19 and fields[19] == start)


# ------------------------------------------------------------------ the journal


@dataclass(frozen=True)
class KeptWheel:
    """A distribution the install changes, and its wheel in the kit."""

    name: str
    version: str
    wheel: str  # file name in the kit's wheels/ folder

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "wheel": self.wheel}


@dataclass(frozen=True)
class DiskSnapshot:
    """What the disk held where pip writes, before the first change: every entry at
    the top of each site folder, and every file under the folders that the changed
    distributions own (pip rewrites those, and a killed pip leaves them half-done)."""

    top: Mapping[str, tuple[str, ...]]  # site folder -> names at its top
    trees: Mapping[str, tuple[str, ...]]  # site folder -> files (relative) under owned folders
    owned: Mapping[str, tuple[str, ...]]  # site folder -> top names the changed dists own

    def to_json(self) -> dict[str, Any]:
        return {
            "top": {k: list(v) for k, v in self.top.items()},
            "trees": {k: list(v) for k, v in self.trees.items()},
            "owned": {k: list(v) for k, v in self.owned.items()},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> DiskSnapshot:
        def tuples(part: Any) -> dict[str, tuple[str, ...]]:
            if not isinstance(part, dict):
                return {}
            return {
                str(k): tuple(str(x) for x in v) for k, v in part.items() if isinstance(v, list)
            }

        return cls(tuples(raw.get("top")), tuples(raw.get("trees")), tuples(raw.get("owned")))


@dataclass(frozen=True)
class Journal:
    """One install's record. Written before the first change; removed when the new
    MXNet is verified or the old state is back."""

    python: str  # the interpreter as the user named it
    prefix: str  # its real sys.prefix: what the journal belongs to
    started: str  # ISO 8601, UTC
    since: float  # the same, in epoch seconds: files newer than this are the install's
    pid: int  # the kmx-tune process
    requirements: tuple[str, ...]  # what the install asked pip for
    uninstall: tuple[str, ...]  # the MXNet distributions it removes first ("name==version")
    before: Mapping[str, Distribution]  # pip's list before anything changed
    way_back: tuple[KeptWheel, ...]  # every distribution pip will change or remove
    pip: PipOptions
    disk: DiskSnapshot
    step: str = "uninstalling"
    child: tuple[int, str | None] | None = None  # the pip process running now, (pid, start)
    folder: Path = field(default=Path(), compare=False)

    @property
    def kit(self) -> Path:
        return self.folder / WHEELS

    def describe(self) -> str:
        """One line: what the interrupted run was doing."""
        goes = ", ".join(self.uninstall)
        what = f"removing {goes} and installing " if goes else "installing "
        return (
            f"started {self.started} by kmx-tune pid {self.pid}, stopped while {self.step}; "
            f"it was {what}{' '.join(self.requirements)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "python": self.python,
            "prefix": self.prefix,
            "started": self.started,
            "since": self.since,
            "pid": self.pid,
            "step": self.step,
            "child": None if self.child is None else {"pid": self.child[0], "start": self.child[1]},
            "requirements": list(self.requirements),
            "uninstall": list(self.uninstall),
            "before": [
                {"name": d.name, "version": d.version, "location": d.location}
                for _, d in sorted(self.before.items())
            ],
            "way_back": [w.to_json() for w in self.way_back],
            "pip_options": {
                "index_url": self.pip.index_url,
                "extra_index_urls": list(self.pip.extra_index_urls),
                # a folder given relative to where that run started: kept absolute
                "find_links": [
                    os.path.abspath(link) if os.path.isdir(link) else link
                    for link in self.pip.find_links
                ],
                "no_index": self.pip.no_index,
            },
            "disk": self.disk.to_json(),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], folder: Path) -> Journal:
        """Raises KeyError, TypeError or ValueError for a journal that is not one."""
        if raw.get("schema") != SCHEMA:
            raise ValueError(f"not a kmx-tune install journal ({raw.get('schema')!r})")
        opts = raw["pip_options"]
        child = raw.get("child")
        return cls(
            python=str(raw["python"]),
            prefix=str(raw["prefix"]),
            started=str(raw["started"]),
            since=float(raw["since"]),
            pid=int(raw["pid"]),
            requirements=tuple(str(r) for r in raw["requirements"]),
            uninstall=tuple(str(r) for r in raw["uninstall"]),
            before={
                normalize(d["name"]): Distribution(
                    str(d["name"]), str(d["version"]), str(d.get("location", ""))
                )
                for d in raw["before"]
            },
            way_back=tuple(
                KeptWheel(str(w["name"]), str(w["version"]), str(w["wheel"]))
                for w in raw["way_back"]
            ),
            pip=PipOptions(
                opts.get("index_url"),
                tuple(opts.get("extra_index_urls") or ()),
                tuple(opts.get("find_links") or ()),
                bool(opts.get("no_index")),
            ),
            disk=DiskSnapshot.from_json(raw.get("disk") or {}),
            step=str(raw.get("step", "uninstalling")),
            child=(int(child["pid"]), child.get("start")) if isinstance(child, dict) else None,
            folder=folder,
        )

    def save(self) -> None:
        """Write the journal durably (temporary file, fsync, rename, fsync the folder)."""
        data = json.dumps(self.to_json(), indent=1).encode("utf-8", "surrogateescape")
        fsio.atomic_write(self.folder / JOURNAL, data, mode=0o600)

    def at(self, step: str, child: tuple[int, str | None] | None = None) -> Journal:
        """This journal at *step* (saved)."""
        moved = replace(self, step=step, child=child)
        moved.save()
        return moved


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load(folder: Path) -> Journal | None:
    """The journal in *folder*, or None when there is none. Raises KmxError for one
    that cannot be read (it is kept: it may be all that says what was there)."""
    path = folder / JOURNAL
    try:
        text = path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KmxError(f"cannot read the install journal {path}: {exc.strerror or exc}") from None
    try:
        return Journal.from_json(json.loads(text), folder)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise KmxError(
            f"the install journal {path} is damaged ({type(exc).__name__}: {exc}); read it to "
            f"see what was installed before, then remove the folder {folder}"
        ) from None


def discard(folder: Path) -> None:
    """Remove a journal and its kit: the journal first (so a kill in the middle leaves
    a kit without a journal, which the next run removes), then the rest."""
    with contextlib.suppress(FileNotFoundError):
        (folder / JOURNAL).unlink()
        fsio.fsync_dir(folder)
    shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ the lock


class Busy(KmxError):
    """Another kmx-tune run is changing this target now."""


@contextlib.contextmanager
def locked(prefix: str, python: str) -> Iterator[Path]:
    """Hold the target's lock (an flock on ``<key>.lock``, released by the kernel
    however this process ends) and yield the journal folder's path. Raises Busy
    when another run holds it."""
    base = installs_dir()
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / f"{target_key(prefix)}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KmxError(
            f"nothing changed: cannot write kmx-tune's install folder {base} "
            f"({exc.strerror or exc}); set KMX_TUNE_CACHE_DIR to a writable folder"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise Busy(
                f"another kmx-tune install-mxnet is changing {python} now; wait until it "
                "ends, then run this again"
            ) from None
        yield base / target_key(prefix)
    finally:
        os.close(fd)


def running(prefix: str) -> bool:
    """Whether a kmx-tune run holds this target's lock now."""
    path = installs_dir() / f"{target_key(prefix)}.lock"
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases the lock if it was taken
    return False


@dataclass(frozen=True)
class Found:
    """A journal found for a target: left by a run that is gone, or one running now."""

    journal: Journal
    running: bool


def find(prefix: str) -> Found | None:
    """The journal of the target with *prefix*, if any. Raises KmxError when there is
    one that cannot be read."""
    folder = folder_for(prefix)
    if not (folder / JOURNAL).exists():
        return None
    journal = load(folder)
    if journal is None or journal.step == VERIFIED:
        return None
    return Found(journal, running(prefix))


def interrupted_message(journal: Journal, python: str, pip: PipOptions | None = None) -> str:
    """What an interrupted install left, and the one command that puts it back."""
    return (
        f"an interrupted kmx-tune install-mxnet changed {python} ({journal.describe()}); "
        f"the way back is kept in {journal.kit}: restore it with "
        f"`{restore_command(python, pip)}`"
    )
