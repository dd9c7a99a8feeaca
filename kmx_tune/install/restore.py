"""Put a target back as its journal says it was: the rollback of a failed or
interrupted install, and ``kmx-tune install-mxnet --restore`` after a run that was
killed.

1. remove what the install added (``pip uninstall``; one by one if together fails);
2. reinstall every distribution the install was to change, from the kit, in a pip
   call of their own (``--no-deps --force-reinstall --no-index --find-links KIT``):
   forced, because a pip killed half-way leaves files that ``pip list`` does not
   show; one by one if together fails, so that one bad wheel does not keep the
   others out;
3. put back anything else that differs from before, from the index (whatever pip
   changed that the resolution did not foresee), each on its own if need be;
4. remove pip's stash and the leftovers of a killed pip from the disk;
5. compare pip's list with the journal's, and say what is still different and the
   exact commands (shell-quoted, with the index options) that would fix it.

It never raises for pip's failures: they are what it reports.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError
from kmx_tune.install import disk
from kmx_tune.install.changes import PACKAGING_TOOLS, PackageChange, describe, diff
from kmx_tune.install.journal import Journal
from kmx_tune.install.pip import PipOptions
from kmx_tune.install.pipstep import list_installed, run_step

Log = Callable[[str], None]


@dataclass(frozen=True)
class PutBack:
    """What putting a target back did, and what is still different."""

    changes: tuple[PackageChange, ...]  # what it changed (pip's list before it -> after it)
    left: tuple[PackageChange, ...]  # still different from before the install
    problems: tuple[str, ...]  # pip's own errors; leftovers that could not be removed
    removed: tuple[str, ...]  # pip's stash and half-installed files removed from disk
    by_hand: tuple[str, ...]  # the commands that would fix what is left
    retry_helps: bool  # what is left has its wheel in the kit (or pip could not even list)

    @property
    def complete(self) -> bool:
        return not self.left and not self.problems

    def problem(self) -> str | None:
        """One line: what went wrong and what is still different, or None."""
        if self.complete:
            return None
        parts = list(self.problems)
        if self.left:
            parts.append("still different from before: " + describe(self.left))
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "changes": [c.to_json() for c in self.changes],
            "left": [c.to_json() for c in self.left],
            "problems": list(self.problems),
            "removed_from_disk": list(self.removed),
            "by_hand": list(self.by_hand),
        }


def _quietly(callback: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """*callback* made unable to stop a rollback (recording the child is a bonus)."""
    if callback is None:
        return None

    def call(pid: int) -> None:
        # a journal that cannot be updated must not stop the rollback
        with contextlib.suppress(Exception):
            callback(pid)

    return call


def _together_or_one_by_one(
    step: Callable[[Sequence[str]], tuple[bool, str]],
    base: Sequence[str],
    items: Sequence[str],
    tail: Sequence[str] = (),
) -> list[tuple[str, str]]:
    """*base* + *items* + *tail* in one pip call; if it fails, one call per item, so one
    missing wheel cannot keep the others back. The items that failed, with pip's reason."""
    if not items:
        return []
    ok, why = step([*base, *items, *tail])
    if ok:
        return []
    if len(items) == 1:
        return [(items[0], why)]
    failed = []
    for item in items:
        ok, why = step([*base, item, *tail])
        if not ok:
            failed.append((item, why))
    return failed


def put_back(
    journal: Journal,
    python: str,
    *,
    pip: PipOptions | None = None,
    out: IO[str] | None = None,
    log: Log,
    label: str = "Rollback",
    on_child: Callable[[int], None] | None = None,
) -> PutBack:
    """Put *python*'s environment back to the journal's ``before``. pip runs in a
    session of its own (a Ctrl-C to the terminal cannot stop it); its output goes to
    *out* and is captured."""
    pip = journal.pip if pip is None else pip
    before = journal.before
    kit = journal.kit

    def step(args: Sequence[str]) -> tuple[bool, str]:
        run = run_step(python, args, out, own_session=True, on_start=_quietly(on_child))
        return run.ok, run.error_line()

    def each(
        base: Sequence[str], items: Sequence[str], tail: Sequence[str] = ()
    ) -> list[tuple[str, str]]:
        return _together_or_one_by_one(step, base, items, tail)

    try:
        now = list_installed(python, own_session=True)
    except KmxError as exc:
        return PutBack((), (), (str(exc),), (), (), True)

    added = [d.name for k, d in now.items() if k not in before and k not in PACKAGING_TOOLS]
    not_removed: list[tuple[str, str]] = []
    if added:
        log(f"{label}: uninstalling " + ", ".join(added))
        not_removed = each(["uninstall", "--yes"], added)

    in_kit = [w for w in journal.way_back if (kit / w.wheel).is_file()]
    kit_names = {normalize(w.name) for w in in_kit}
    not_installed: list[tuple[str, str]] = []
    if in_kit:
        kept = ", ".join(w.requirement for w in in_kit)
        log(f"{label}: reinstalling from the kept wheels: {kept}")
        not_installed += each(
            ["install", "--no-deps", "--force-reinstall", "--no-index", "--find-links", str(kit)],
            [w.requirement for w in in_kit],
        )
    others = [
        d.requirement
        for k, d in sorted(before.items())
        if normalize(d.name) not in kit_names and (k not in now or now[k].version != d.version)
    ]
    if others:
        log(f"{label}: reinstalling from the index: " + ", ".join(others))
        not_installed += each(["install", "--no-deps"], others, pip.args())
    removed, failed = disk.repair(journal.disk, journal.since)
    if removed:
        log(f"{label}: removed what the interrupted pip left on disk: " + ", ".join(removed))

    try:
        final = list_installed(python, own_session=True)
    except KmxError as exc:
        return PutBack((), (), (str(exc),), tuple(removed), (), True)
    left = tuple(
        c
        for c in diff(before, final)
        if not (c.before is None and normalize(c.name) in PACKAGING_TOOLS)
    )
    problems = _problems(not_installed, not_removed, failed, final)
    by_hand = commands_for(left, before, journal, python, pip)
    retry = bool(failed) or any(normalize(c.name) in kit_names and c.before for c in left)
    return PutBack(diff(now, final), left, tuple(problems), tuple(removed), by_hand, retry)


def _problems(
    not_installed: Sequence[tuple[str, str]],
    not_removed: Sequence[tuple[str, str]],
    failed: Sequence[str],
    final: Mapping[str, Distribution],
) -> list[str]:
    problems = [f"pip install {item} failed: {why}" for item, why in not_installed]
    # an uninstall that failed (a half-installed distribution without RECORD) is no
    # problem once the disk repair has removed what was left of it
    problems += [
        f"pip uninstall {item} failed: {why}"
        for item, why in not_removed
        if normalize(item) in final
    ]
    problems += [f"cannot remove {path}" for path in failed]
    return problems


def commands_for(
    left: Sequence[PackageChange],
    before: Mapping[str, Distribution],
    journal: Journal,
    python: str,
    pip: PipOptions,
) -> tuple[str, ...]:
    """The pip commands that would put back what is *left*, shell-quoted, with the
    kit or the index options."""
    kit_names = {normalize(w.name) for w in journal.way_back if (journal.kit / w.wheel).is_file()}
    added = [c.name for c in left if c.before is None]
    from_kit = [
        f"{c.name}=={c.before}" for c in left if c.before and normalize(c.name) in kit_names
    ]
    from_index = [
        f"{c.name}=={c.before}" for c in left if c.before and normalize(c.name) not in kit_names
    ]
    commands = []
    if added:
        commands.append(shlex.join([python, "-m", "pip", "uninstall", "-y", *added]))
    if from_kit:
        commands.append(
            shlex.join(
                [
                    python,
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--force-reinstall",
                    "--no-index",
                    "--find-links",
                    str(journal.kit),
                    *from_kit,
                ]
            )  # fmt: skip
        )
    if from_index:
        commands.append(
            shlex.join([python, "-m", "pip", "install", "--no-deps", *from_index, *pip.args()])
        )
    return tuple(commands)
