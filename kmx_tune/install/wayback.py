"""The way back, kept before anything changes: resolve the complete install first
(:mod:`kmx_tune.install.resolve`: the target's own pip ``--dry-run --report``), so that
every distribution pip will remove or replace is known -- the MXNet flavors the plan
uninstalls, and whatever pip would up- or downgrade for the new one (mxnet 1.9.1
pins graphviz<0.9; a CUDA flavor may pull NVIDIA libraries) -- and fetch a wheel of
each, at the version installed now, into the kit (kmx-tune's own CUDA library wiring,
which is on no index, is built again from the table). A distribution that cannot be
fetched again stops the install before it changes anything."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from kmx_tune import fsio, versions
from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError
from kmx_tune.flavors.cuda_libs import WIRING_DIST
from kmx_tune.install import cuda_wiring
from kmx_tune.install.journal import KeptWheel
from kmx_tune.install.pip import PipOptions, offline_reason
from kmx_tune.install.pipstep import run_step
from kmx_tune.install.plan import InstallPlan
from kmx_tune.install.resolve import Resolution, TargetTags, resolve
from kmx_tune.target import TargetInfo


def resolve_install(plan: InstallPlan, facts: TargetInfo, pip: PipOptions) -> Resolution:
    """What pip would install or replace for the plan, asked before anything changes:
    the plan's own resolution when the availability check made one (minutes ago, for
    the same target), else asked now. Raises KmxError (nothing changed) when pip
    cannot resolve it."""
    if plan.resolution is not None and plan.resolution.ok:
        return plan.resolution
    tags = TargetTags(
        (facts.version[0], facts.version[1]),
        facts.implementation,
        facts.sysconfig_platform or f"{facts.platform}-{facts.machine}",
        facts.libc,
    )
    resolution = resolve(
        plan.python, plan.requirements, pip, pip_version=facts.pip_version, tags=tags
    )
    if not resolution.ok:
        why = resolution.offline or resolution.error
        raise KmxError(
            f"nothing changed: pip cannot resolve {' '.join(plan.requirements)} for "
            f"{plan.python} ({why}), so kmx-tune cannot know what the install would change"
        )
    return resolution


def changed_by(
    plan: InstallPlan, before: Mapping[str, Distribution], resolution: Resolution
) -> list[Distribution]:
    """The distributions installed now that the install removes or replaces: the
    plan's uninstalls, and each one the resolution installs at another version."""
    changed: dict[str, Distribution] = {}
    for dist in plan.uninstall:
        key = normalize(dist.name)
        changed[key] = before.get(key, dist)
    for item in resolution.installs:
        now = before.get(item.key)
        if now is None or item.key in changed:
            continue
        if now.version != item.version and not versions.same(now.version, item.version):
            changed[item.key] = now
    return sorted(changed.values(), key=lambda d: d.name.lower())


def _download(python: str, requirement: str, dest: Path, pip: PipOptions) -> tuple[bool, str]:
    run = run_step(
        python,
        [
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            str(dest),
            requirement,
            *pip.args(),
        ],
        None,
    )
    if run.ok:
        return True, ""
    offline = offline_reason(run.output)
    return False, f"offline: {offline}" if offline else run.error_line()


def _uninstall(plan: InstallPlan, dist: Distribution) -> str:
    return shlex.join([plan.python, "-m", "pip", "uninstall", "-y", dist.name])


def keep_a_way_back(
    plan: InstallPlan, changed: list[Distribution], kit: Path, pip: PipOptions
) -> tuple[KeptWheel, ...]:
    """Fetch a wheel of each *changed* distribution, at its installed version, into
    *kit* (pip's cache makes this quick), and make them durable. Raises KmxError,
    nothing having changed, when one cannot be fetched."""
    kit.mkdir(parents=True, exist_ok=True)
    kept: list[KeptWheel] = []
    for dist in changed:
        if normalize(dist.name) == normalize(WIRING_DIST):
            # kmx-tune's CUDA library wiring is on no index: built again from the table
            rebuilt = cuda_wiring.rebuild(dist.version, kit)
            if rebuilt is None:
                raise KmxError(
                    f"nothing changed: the install would remove {dist.name} {dist.version}, "
                    "which this kmx-tune cannot build again, so a failed install could not "
                    f"put it back; remove it first (`{_uninstall(plan, dist)}`)"
                )
            kept.append(KeptWheel(dist.name, dist.version, rebuilt.name))
            continue
        seen = set(os.listdir(kit))
        ok, why = _download(plan.python, dist.requirement, kit, pip)
        new = sorted(set(os.listdir(kit)) - seen)
        wheels = [n for n in new if n.endswith(".whl")]
        if not ok or not wheels:
            uninstall = _uninstall(plan, dist)
            raise KmxError(
                f"nothing changed: the install would change {dist.name} {dist.version}, and "
                f"pip cannot fetch its wheel again ({why or 'no wheel'}), so a failed install "
                f"could not put it back; put {dist.requirement}'s wheel in a folder and add "
                f"--find-links DIR, or uninstall it first (`{uninstall}`)"
            )
        kept.append(KeptWheel(dist.name, dist.version, wheels[0]))
    for name in os.listdir(kit):
        fd = os.open(kit / name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    fsio.fsync_dir(kit)
    return tuple(kept)
