"""The disk where pip writes, before and after: "what was there before" must hold for
the files, not only for ``pip list``.

A pip killed in the middle of an uninstall leaves its stash in site-packages (the
old files moved to ``~xnet/``, ``~xnet_native-1.8.0.post0.dist-info``: pip names
them with a leading ``~``), and every pip command then warns about an "invalid
distribution"; one killed in the middle of an install leaves some of the new files
and perhaps metadata without a RECORD. :func:`snapshot` notes what was there before
the first change; :func:`repair`, after the old distributions are back, removes
what the interrupted pip left and no installed distribution owns."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from kmx_tune import versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.install.journal import DiskSnapshot

STASH_MARK = "~"  # pip's AdjacentTempDirectory: "~" + the name without its first letters


def site_folders(dists: Iterable[Distribution]) -> list[str]:
    """The folders pip installs into: where the installed distributions live."""
    found = {os.path.realpath(d.location) for d in dists if d.location}
    return sorted(f for f in found if os.path.isdir(f))


def _dist_info_dirs(site: str) -> list[Path]:
    try:
        return [p for p in Path(site).iterdir() if p.name.endswith(".dist-info") and p.is_dir()]
    except OSError:
        return []


def find_dist_info(site: str, dist: Distribution) -> Path | None:
    """The ``NAME-VERSION.dist-info`` folder of *dist* in *site*."""
    for path in _dist_info_dirs(site):
        name, _, version = path.name[: -len(".dist-info")].partition("-")
        if normalize(name) == normalize(dist.name) and (
            version == dist.version or versions.same(version, dist.version)
        ):
            return path
    return None


def record_paths(dist_info: Path) -> set[str]:
    """The files a RECORD lists, relative to the site folder, normalized; those
    outside it (scripts in bin/) are left out."""
    try:
        text = (dist_info / "RECORD").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    paths = set()
    for line in text.splitlines():
        path = line.rsplit(",", 2)[0] if line.count(",") >= 2 else line
        path = os.path.normpath(path.strip().strip('"'))
        if path and not path.startswith(".."):
            paths.add(path)
    return paths


def owned_paths(site: str) -> set[str]:
    """Every file that an installed distribution's RECORD lists in *site*."""
    owned: set[str] = set()
    for dist_info in _dist_info_dirs(site):
        owned |= record_paths(dist_info)
    return owned


def _top(path: str) -> str:
    return path.split(os.sep, 1)[0]


def _walk(site: str, tops: Iterable[str]) -> list[str]:
    """The files and folders (these with a trailing "/") under *tops* in *site*."""
    found: list[str] = []
    for top in tops:
        root = os.path.join(site, top)
        if os.path.isdir(root) and not os.path.islink(root):
            found.append(top + "/")
            for folder, dirs, files in os.walk(root):
                rel = os.path.relpath(folder, site)
                found += [os.path.join(rel, d) + "/" for d in dirs]
                found += [os.path.join(rel, f) for f in files]
        elif os.path.lexists(root):
            found.append(top)
    return sorted(found)


def snapshot(before: Mapping[str, Distribution], changed: Iterable[Distribution]) -> DiskSnapshot:
    """What is on disk now where pip will write: the top of every site folder, and
    every file under the top-level folders that the *changed* distributions own."""
    sites = site_folders(before.values())
    top: dict[str, tuple[str, ...]] = {}
    trees: dict[str, tuple[str, ...]] = {}
    owned_tops: dict[str, tuple[str, ...]] = {}
    for site in sites:
        try:
            top[site] = tuple(sorted(os.listdir(site)))
        except OSError:
            continue
        tops: set[str] = set()
        for dist in changed:
            if dist.location and os.path.realpath(dist.location) != site:
                continue
            info = find_dist_info(site, dist)
            if info is not None:
                tops |= {_top(p) for p in record_paths(info)}
        tops.discard("__pycache__")  # shared by every top-level module
        owned_tops[site] = tuple(sorted(tops))
        trees[site] = tuple(_walk(site, sorted(tops)))
    return DiskSnapshot(top, trees, owned_tops)


def _remove(path: str) -> bool:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        return False
    return True


def _new_since(path: str, since: float) -> bool:
    """Whether *path* was made (or moved: a rename sets ctime) at or after *since*."""
    try:
        return os.lstat(path).st_ctime >= since
    except OSError:
        return False


def repair(shot: DiskSnapshot, since: float) -> tuple[list[str], list[str]]:
    """Remove what an interrupted pip left where the snapshot was taken: pip's
    stash (names starting with "~") that was not there before, and entries that were
    not there before, appeared after *since* (epoch seconds) and that no installed
    distribution's RECORD owns. Returns (removed, could not remove)."""
    removed: list[str] = []
    failed: list[str] = []

    def drop(path: str) -> None:
        (removed if _remove(path) else failed).append(path)

    for site, names_before in shot.top.items():
        if not os.path.isdir(site):
            continue
        owned = owned_paths(site)
        owned_tops = {_top(p) for p in owned}
        before = set(names_before)
        try:
            names_now = sorted(os.listdir(site))
        except OSError:
            continue
        for name in names_now:
            if name in before:
                continue
            path = os.path.join(site, name)
            if name.startswith(STASH_MARK) or (name not in owned_tops and _new_since(path, since)):
                drop(path)
        tree_before = set(shot.trees.get(site, ()))
        tops = [t for t in shot.owned.get(site, ()) if os.path.lexists(os.path.join(site, t))]
        for rel in reversed(_walk(site, tops)):  # children before their folders
            if rel in tree_before:
                continue
            path = os.path.join(site, rel.rstrip("/"))
            if rel.endswith("/"):
                with contextlib.suppress(OSError):
                    if not os.listdir(path) and _new_since(path, since):
                        os.rmdir(path)
                        removed.append(path)
                continue
            if os.path.normpath(rel) not in owned and _new_since(path, since):
                drop(path)
    return removed, failed
