"""Verification: a fresh process of the target imports the new MXNet, checks its build
features, runs an element-wise operation, dot, FullyConnected and Convolution (on the
CPU, and on gpu(0) for a CUDA flavor) and says where each CUDA library came from;
:func:`judge` turns what it saw into problems."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kmx_tune import versions
from kmx_tune.dists import Distribution, is_mxnet_distribution, normalize
from kmx_tune.errors import KmxError, TargetError
from kmx_tune.install.plan import InstallPlan
from kmx_tune.target import failure_tail, run_script

# the operations the check runs, with the sums they must give (kmx_verify_mxnet.py)
OPS = {"elementwise": 8.0, "dot": 262144.0, "fully_connected": 2048.0, "convolution": 42336.0}
_SIGNALS = {
    signal.SIGILL: "SIGILL (illegal instruction: the CPU lacks an instruction the wheel uses, "
    "such as AVX)",
    signal.SIGSEGV: "SIGSEGV (segmentation fault)",
    signal.SIGABRT: "SIGABRT (the process aborted)",
    signal.SIGBUS: "SIGBUS (bus error)",
}


@dataclass(frozen=True)
class Verification:
    """What a fresh process of the target saw when it imported the new MXNet."""

    ok: bool
    problems: tuple[str, ...]
    mxnet_version: str | None
    features: Mapping[str, bool] | None
    num_gpus: int | None
    numpy_version: str | None
    cuda_libraries: Mapping[str, str] = field(default_factory=dict)  # file name -> path loaded
    cuda_versions: Mapping[str, int] = field(default_factory=dict)  # runtime, cudnn, nccl, ...
    cuda_library_versions: Mapping[str, str] = field(default_factory=dict)  # file name -> version
    ops: Mapping[str, float] = field(default_factory=dict)  # "dot on cpu" -> value

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "mxnet_version": self.mxnet_version,
            "numpy_version": self.numpy_version,
            "features": None if self.features is None else dict(self.features),
            "num_gpus": self.num_gpus,
            "operations": dict(self.ops),
            "cuda_libraries": dict(self.cuda_libraries),
            "cuda_versions": dict(self.cuda_versions),
            "cuda_library_versions": dict(self.cuda_library_versions),
        }


def judge(
    plan: InstallPlan, report: Mapping[str, Any], installed: Mapping[str, Distribution]
) -> Verification:
    """Pure: the problems in a verify report (kmx_verify_mxnet.py) and pip's list."""
    problems = _distribution_problems(plan, installed)
    import_problem = _import_problem(plan, report)
    if import_problem is not None:
        problems.append(import_problem)
    else:
        problems += _runtime_problems(plan, report, installed)
    wiring = report.get("wiring") or {}
    for error in wiring.get("errors", ()):
        problems.append(f"kmx-tune's CUDA library wiring could not load {error}")
    return Verification(
        ok=not problems,
        problems=tuple(problems),
        mxnet_version=report.get("mxnet_version"),
        features=report.get("features"),
        num_gpus=report.get("num_gpus"),
        numpy_version=report.get("numpy_version"),
        cuda_libraries=dict(report.get("cuda_libraries") or {}),
        cuda_versions=dict(report.get("cuda_versions") or {}),
        cuda_library_versions=dict(report.get("cuda_library_versions") or {}),
        ops={
            f"{name} on {where}": value
            for where in ("cpu", "gpu")
            for name, value in (report.get(f"{where}_ops") or {}).items()
        },
    )


def _distribution_problems(plan: InstallPlan, installed: Mapping[str, Distribution]) -> list[str]:
    """pip must list exactly the planned MXNet distribution at the planned version."""
    mx_dists = sorted(
        (d for key, d in installed.items() if is_mxnet_distribution(key)), key=lambda d: d.name
    )
    if (
        len(mx_dists) == 1
        and normalize(mx_dists[0].name) == normalize(plan.package)
        and (
            mx_dists[0].version == plan.version or versions.same(mx_dists[0].version, plan.version)
        )
    ):
        return []
    found = ", ".join(d.requirement for d in mx_dists) or "none"
    return [f"pip lists these MXNet distributions: {found}; expected {plan.requirement} only"]


def _import_problem(plan: InstallPlan, report: Mapping[str, Any]) -> str | None:
    """Why `import mxnet` did not give a module, with the likeliest cause; None if it did."""
    if report.get("crash"):
        return str(report["crash"])
    if report.get("import_error"):
        hint = ""
        if report.get("library_path"):
            hint = (
                f" (MXNET_LIBRARY_PATH={report['library_path']} is set: mxnet loads that file "
                "instead of the wheel's library; unset it)"
            )
        missing = re.search(
            r"(lib[\w.+-]+\.so[\w.]*): cannot open shared object", report["import_error"]
        )
        if missing and not hint:
            hint = (
                f" ({missing.group(1)} is not found by the dynamic loader: `kmx-tune doctor "
                f"--python {plan.python}` lists every library libmxnet.so needs and where each "
                "is or is not)"
            )
        return f"import mxnet failed: {report['import_error']}{hint}"
    if not report.get("mxnet_file"):
        # a namespace package: what is left of a folder another flavor's uninstall emptied
        return (
            "import mxnet found a folder without __init__.py: the package's files are "
            "missing (reinstall it with pip install --force-reinstall)"
        )
    return None


def _runtime_problems(
    plan: InstallPlan, report: Mapping[str, Any], installed: Mapping[str, Distribution]
) -> list[str]:
    """What the imported module says: its version and file, build features, operations."""
    problems: list[str] = []
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
    problems.extend(_ops_problems(report, "cpu"))
    if plan.gpu:
        if report.get("num_gpus_error"):
            problems.append(f"mx.context.num_gpus() failed: {report['num_gpus_error']}")
        elif not report.get("num_gpus"):
            problems.append("mx.context.num_gpus() is 0: MXNet sees no GPU")
        else:
            problems.extend(_ops_problems(report, "gpu"))
    return problems


def _ops_problems(report: Mapping[str, Any], where: str) -> list[str]:
    """The four operations on *where*: each must give its exact sum. Older reports
    (and the element-wise step alone) come as ``cpu_op``/``gpu_op``."""
    values = dict(report.get(f"{where}_ops") or {})
    errors = dict(report.get(f"{where}_op_errors") or {})
    if not values and not errors:  # a report of the element-wise operation only
        values = {"elementwise": report.get(f"{where}_op")}
        errors = {"elementwise": report.get(f"{where}_op_error")}
    device = "cpu" if where == "cpu" else "gpu(0)"
    problems = []
    for name, expected in OPS.items():
        if name not in values and name not in errors and name != "elementwise":
            continue  # a report from before the operation was added
        if values.get(name) != expected:
            what = "a tiny operation" if name == "elementwise" else name
            error = errors.get(name) or f"gave {values.get(name)}, expected {expected}"
            problems.append(f"{what} on {device} failed: {error}")
    return problems


def crash_report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """What to judge when the check process died instead of printing its report: the
    step it was in (its last ``kmx-step:`` line) and the signal or status."""
    steps = [line.split(":", 1)[1].strip() for line in proc.stderr.splitlines()
             if line.startswith("kmx-step:")]  # fmt: skip
    step = steps[-1] if steps else "starting Python"
    if proc.returncode < 0:
        sig = -proc.returncode
        how = (
            _SIGNALS.get(signal.Signals(sig), f"signal {sig}")
            if sig in signal.valid_signals()
            else f"signal {sig}"
        )
        died = f"killed by {how}"
    else:
        died = f"exited with status {proc.returncode} ({failure_tail(proc)})"
    return {"crash": f"the check process was {died} during {step}", "crash_step": step}


def run_check(python: str, gpu: bool, timeout: float = 300) -> dict[str, Any]:
    """Run kmx_verify_mxnet.py in a fresh process of *python*; its report, or what is
    known when it crashed. Raises TargetError when the interpreter cannot start."""
    env = dict(os.environ)
    env.pop("KMX_MXNET_CUDA_LIBS", None)  # the check sees what `import mxnet` will see
    proc = run_script(python, "kmx_verify_mxnet.py", ["--gpu"] if gpu else [], env=env,
                      timeout=timeout)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        try:
            data: dict[str, Any] = json.loads(lines[-1])
            return data
        except ValueError:
            pass
    return crash_report(proc)


def verify(plan: InstallPlan, installed: Mapping[str, Distribution]) -> Verification:
    """Import the new MXNet in a fresh process of the target and judge what it saw."""
    try:
        report = run_check(plan.python, plan.gpu)
    except (TargetError, KmxError) as exc:  # cannot start, or no answer in time
        report = {"import_error": str(exc)}
    return judge(plan, report, installed)
