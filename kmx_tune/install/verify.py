"""Verification: a fresh process of the target imports the new MXNet, checks its build
features and runs an operation; :func:`judge` turns what it saw into problems."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmx_tune import versions
from kmx_tune.dists import Distribution, is_mxnet_distribution, normalize
from kmx_tune.errors import TargetError
from kmx_tune.install.plan import InstallPlan
from kmx_tune.target import run_in_target


@dataclass(frozen=True)
class Verification:
    """What a fresh process of the target saw when it imported the new MXNet."""

    ok: bool
    problems: tuple[str, ...]
    mxnet_version: str | None
    features: Mapping[str, bool] | None
    num_gpus: int | None
    numpy_version: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "mxnet_version": self.mxnet_version,
            "numpy_version": self.numpy_version,
            "features": None if self.features is None else dict(self.features),
            "num_gpus": self.num_gpus,
        }


def judge(
    plan: InstallPlan, report: Mapping[str, Any], installed: Mapping[str, Distribution]
) -> Verification:
    """Pure: the problems in a verify report (kmx_verify_mxnet.py) and pip's list."""
    problems: list[str] = []
    mx_dists = sorted(
        (d for key, d in installed.items() if is_mxnet_distribution(key)), key=lambda d: d.name
    )
    if not (
        len(mx_dists) == 1
        and normalize(mx_dists[0].name) == normalize(plan.package)
        and (
            mx_dists[0].version == plan.version or versions.same(mx_dists[0].version, plan.version)
        )
    ):
        found = ", ".join(d.requirement for d in mx_dists) or "none"
        problems.append(
            f"pip lists these MXNet distributions: {found}; expected {plan.requirement} only"
        )
    if report.get("import_error"):
        hint = ""
        if report.get("library_path"):
            hint = (
                f" (MXNET_LIBRARY_PATH={report['library_path']} is set: mxnet loads that file "
                "instead of the wheel's library; unset it)"
            )
        problems.append(f"import mxnet failed: {report['import_error']}{hint}")
    elif not report.get("mxnet_file"):
        # a namespace package: what is left of a folder another flavor's uninstall emptied
        problems.append(
            "import mxnet found a folder without __init__.py: the package's files are "
            "missing (reinstall it with pip install --force-reinstall)"
        )
    else:
        version = report.get("mxnet_version") or "?"
        if versions.release(version) != versions.release(plan.version):
            problems.append(f"import mxnet gave version {version}, expected {plan.version}")
        new = installed.get(normalize(plan.package))
        mx_file = report.get("mxnet_file") or ""
        if (
            new
            and new.location
            and not os.path.realpath(mx_file).startswith(os.path.realpath(new.location) + os.sep)
        ):
            problems.append(
                f"import mxnet found {mx_file}, not the installed one in {new.location} "
                "(check PYTHONPATH)"
            )
        features = report.get("features")
        if features is None:
            problems.append(f"mx.runtime.Features() failed: {report.get('features_error')}")
        else:
            if plan.gpu and not features.get("CUDA"):
                problems.append("mx.runtime.Features() has no CUDA in a GPU flavor")
            if plan.expect_mkldnn and not features.get("MKLDNN"):
                problems.append("mx.runtime.Features() has no MKLDNN")
        if report.get("cpu_op") != 8.0:
            problems.append(f"a tiny operation on cpu failed: {report.get('cpu_op_error')}")
        if plan.gpu:
            if report.get("num_gpus_error"):
                problems.append(f"mx.context.num_gpus() failed: {report['num_gpus_error']}")
            elif not report.get("num_gpus"):
                problems.append("mx.context.num_gpus() is 0: MXNet sees no GPU")
            elif report.get("gpu_op") != 8.0:
                problems.append(f"a tiny operation on gpu(0) failed: {report.get('gpu_op_error')}")
    return Verification(
        ok=not problems,
        problems=tuple(problems),
        mxnet_version=report.get("mxnet_version"),
        features=report.get("features"),
        num_gpus=report.get("num_gpus"),
        numpy_version=report.get("numpy_version"),
    )


def verify(plan: InstallPlan, installed: Mapping[str, Distribution]) -> Verification:
    """Import the new MXNet in a fresh process of the target and judge what it saw."""
    try:
        report = run_in_target(
            plan.python, "kmx_verify_mxnet.py", ["--gpu"] if plan.gpu else [], timeout=300
        )
    except TargetError as exc:  # the process crashed (a segfault, an illegal instruction)
        report = {"import_error": str(exc)}
    return judge(plan, report, installed)
