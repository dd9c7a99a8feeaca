"""Checks of the interpreter and the tuning variables in the environment."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

from kmx_tune import versions
from kmx_tune.dists import Distribution
from kmx_tune.doctor.model import OK, WARN, Context, Finding, MachineContext
from kmx_tune.install.pip import PIP_FOR_PYTHON, pip_upgrade_args

KMP_AFFINITY = "granularity=fine,compact,1,0"  # MXNet performance guide


# pip learned the manylinux2014 tag of every MXNet 1.6+ wheel in 19.3 (PEP 599)
PIP_MANYLINUX2014 = "19.3"


# The newest pip each old Python can run (pip 22.0 dropped 3.6, 24.1 dropped 3.7, 25.1
# dropped 3.8). A plain `pip install --upgrade pip` can pick a pip the Python cannot run
# and fail ("pip requires Python '>=3.10'"), as it did on a Python 3.6 with a
# find-links folder of new wheels; `--upgrade 'pip<22'` worked there.
def pip_upgrade(ctx: Context) -> str:
    """The pip upgrade that works on the target's Python."""
    return ctx.pip(*pip_upgrade_args(ctx.py))


def check_python(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    where = f"detected: {t.implementation} {t.version_str} at {t.executable}" + (
        " (a virtual environment)" if t.in_venv else ""
    )
    if ctx.keras_mxnet_cannot_run:
        route = ctx.route
        yield Finding(
            "python",
            WARN,
            f"{ctx.py_str} cannot run keras-mxnet 2.2.4.3, and nothing of Keras-MXNet is "
            "installed here: make an environment with Python 3.6-3.9",
            f"{where}; keras-mxnet imports only on Python 3.6-3.9 (3.10 removed "
            f"collections.Iterable); {route.detail}",
            ctx.old_python_route(),
        )
        return
    if not t.has_pip:
        yield Finding(
            "python",
            WARN,
            f"{ctx.py_str} has no pip: the fixes below need it",
            where,
            shlex.join([ctx.python, "-m", "ensurepip", "--upgrade"]),
        )
        return
    pip = t.pip_version
    if pip is not None and versions.parse(pip) and not versions.at_least(pip, PIP_MANYLINUX2014):
        yield Finding(
            "python",
            WARN,
            f"pip {pip} cannot install MXNet: it does not know the manylinux2014 wheels of "
            "MXNet 1.6 and later",
            f"{where}; manylinux2014 wheels need pip {PIP_MANYLINUX2014} or newer (PEP 599)"
            + (
                f"; the newest pip for {ctx.py_str} is {PIP_FOR_PYTHON[ctx.py]}"
                if ctx.py in PIP_FOR_PYTHON
                else ""
            ),
            pip_upgrade(ctx),
        )
        return
    yield Finding("python", OK, f"{ctx.py_str} with pip" + (f" {pip}" if pip else ""), where)


def check_environment(
    ctx: MachineContext, looked_at: Sequence[str], keras_environments: Sequence[str]
) -> Finding:
    """With no environment to check: the Keras-MXNet environments already on this
    machine, or how to make one."""
    looked = "; ".join(looked_at) or "VIRTUAL_ENV and CONDA_PREFIX are not set, no `python` on PATH"
    own = "kmx-tune's own environment is checked only when named with --python"
    if keras_environments:
        first = keras_environments[0]
        return Finding(
            "environment",
            WARN,
            f"no environment chosen, and keras-mxnet is installed in {first}",
            f"looked at: {looked}; found keras-mxnet in {', '.join(keras_environments)}; {own}",
            shlex.join(["kmx-tune", "doctor", "--python", first]),
        )
    return Finding(
        "environment",
        WARN,
        "no Keras-MXNet environment found: make one with Python 3.6-3.9",
        f"looked at: {looked}; keras-mxnet 2.2.4.3 needs Python 3.6-3.9: {ctx.route.detail}; "
        + own,
        ctx.old_python_route(),
    )


# MXNet 1.x's src/engine/openmp.cc: without OMP_NUM_THREADS (or MXNET_OMP_MAX_THREADS) it
# sets omp_get_num_procs() threads, halved on x86 (it takes every other CPU for a
# hyperthread). On this project's 2-CPU VM, 2 threads instead of that 1 trained a CNN
# 1.7x faster at load 1-2 (../shared/reports/new-user-run-2026-11-30.md) and 2.6x slower
# at load 10 (benchmarks/bench_slow_to_fast.py): OpenMP threads spin while they wait.
_DEFAULT_RULE = "half the CPUs it may use, on x86: src/engine/openmp.cc"
_SHARED = "with other jobs on these CPUs, fewer threads can be faster"


def mxnet_default_threads(ctx: MachineContext) -> int:
    """The OpenMP threads MXNet runs when OMP_NUM_THREADS is not set."""
    cpu = ctx.hw.cpu
    procs = cpu.usable_cores or cpu.logical_cores
    return max(1, procs // 2 if ctx.hw.arch == "x86_64" else procs)


def check_omp_threads(ctx: MachineContext) -> Iterator[Finding]:
    cpu = ctx.hw.cpu
    cores = cpu.effective_cores
    parts = [f"{cpu.physical_cores or '?'} physical cores, {cpu.logical_cores} logical"]
    if cpu.usable_cores is not None and cpu.usable_cores != cpu.logical_cores:
        parts.append(f"{cpu.usable_cores} usable")
    if cpu.cgroup_cpu_limit:
        parts.append(f"cgroup quota {cpu.cgroup_cpu_limit:g} CPUs")
    detected = f"{ctx.hw.origin}: " + ", ".join(parts)
    guide = "the MXNet performance guide: one OpenMP thread per physical core"
    fix = f"export OMP_NUM_THREADS={cores}"
    raw = ctx.env.get("OMP_NUM_THREADS")
    if raw is None:
        yield Finding(
            "env.OMP_NUM_THREADS",
            WARN,
            "OMP_NUM_THREADS is not set",
            f"{detected}; unset, MXNet runs {mxnet_default_threads(ctx)} OpenMP thread(s) "
            f"({_DEFAULT_RULE if ctx.hw.arch == 'x86_64' else 'one per CPU it may use'}); "
            f"{guide}; {_SHARED}",
            fix,
        )
        return
    try:
        threads = int(raw.split(",")[0])
    except ValueError:
        threads = 0
    if threads < 1:
        yield Finding(
            "env.OMP_NUM_THREADS",
            WARN,
            f"OMP_NUM_THREADS={raw} is not a positive number",
            f"from the environment; {detected}",
            fix,
        )
    elif threads > cores:
        yield Finding(
            "env.OMP_NUM_THREADS",
            WARN,
            f"OMP_NUM_THREADS={threads} oversubscribes the {cores} cores available",
            f"from the environment; {detected}; {guide}",
            fix,
        )
    elif threads < cores:
        yield Finding(
            "env.OMP_NUM_THREADS",
            OK,
            f"OMP_NUM_THREADS={threads}, fewer than the {cores} cores available",
            f"from the environment; {detected}; fine when several processes share the CPU",
        )
    else:
        yield Finding(
            "env.OMP_NUM_THREADS",
            OK,
            f"OMP_NUM_THREADS={threads} matches the cores available",
            f"from the environment; {detected}",
        )


def openmp_runtime(dist: Distribution) -> tuple[str, str] | None:
    """("intel" | "gnu", evidence) for an installed MXNet, from the libraries in its
    package folder (the -mkl wheels ship libiomp5); None when it cannot be told."""
    if not dist.location:
        return None
    folder = Path(dist.location) / "mxnet"
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    intel = sorted(n for n in names if n.startswith("libiomp5"))
    if intel:
        return "intel", f"detected: {intel[0]} in {folder}"
    if "libmxnet.so" in names:
        return "gnu", f"detected: no libiomp5 beside libmxnet.so in {folder} (GNU OpenMP)"
    return None


def check_kmp_affinity(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    if len(dists) != 1:
        return
    runtime = openmp_runtime(dists[0])
    if runtime is None:
        return
    kind, evidence = runtime
    value = ctx.env.get("KMP_AFFINITY")
    installed = f"{dists[0].name} {dists[0].version}"
    if kind == "intel":
        if value is None:
            yield Finding(
                "env.KMP_AFFINITY",
                WARN,
                f"KMP_AFFINITY is not set for {installed}, an Intel OpenMP build",
                f"{evidence}; the MXNet performance guide: KMP_AFFINITY={KMP_AFFINITY}",
                f"export KMP_AFFINITY={KMP_AFFINITY}",
            )
        else:
            yield Finding(
                "env.KMP_AFFINITY",
                OK,
                f"KMP_AFFINITY={value} (Intel OpenMP build)",
                f"from the environment; {evidence}",
            )
    elif value is not None:
        yield Finding(
            "env.KMP_AFFINITY",
            OK,
            f"KMP_AFFINITY={value} has no effect on {installed}",
            f"{evidence}; GNU OpenMP reads OMP_PROC_BIND and OMP_PLACES instead",
        )
    else:
        yield Finding(
            "env.KMP_AFFINITY",
            OK,
            f"KMP_AFFINITY not needed: {installed} uses GNU OpenMP",
            evidence,
        )


def check_subgraph_backend(ctx: MachineContext) -> Iterator[Finding]:
    raw = ctx.env.get("MXNET_SUBGRAPH_BACKEND")
    if raw is not None and raw.strip().upper() == "NONE" and not ctx.rec.gpu:
        yield Finding(
            "env.MXNET_SUBGRAPH_BACKEND",
            WARN,
            "MXNET_SUBGRAPH_BACKEND=NONE turns MKL-DNN operator fusion off",
            "from the environment; MKLDNN is the default where MKL-DNN is built in",
            "unset MXNET_SUBGRAPH_BACKEND",
        )


def check_library_path(ctx: MachineContext) -> Iterator[Finding]:
    """mxnet/libinfo.py loads $MXNET_LIBRARY_PATH instead of the wheel's libmxnet.so when
    it is an absolute path to a file, and warns and ignores it otherwise: a stale value
    left from a source build makes `import mxnet` fail or load the wrong build."""
    raw = ctx.env.get("MXNET_LIBRARY_PATH")
    if not raw:
        return
    source = "from the environment; mxnet/libinfo.py loads it instead of the wheel's libmxnet.so"
    if os.path.isabs(raw) and os.path.isfile(raw):
        yield Finding(
            "env.MXNET_LIBRARY_PATH",
            WARN,
            f"MXNET_LIBRARY_PATH={raw}: `import mxnet` loads this library, not the one of the "
            "installed wheel",
            source + "; keep it only for an MXNet you built yourself",
            "unset MXNET_LIBRARY_PATH",
        )
    else:
        why = "is not an absolute path" if not os.path.isabs(raw) else "is not a file"
        yield Finding(
            "env.MXNET_LIBRARY_PATH",
            WARN,
            f"MXNET_LIBRARY_PATH={raw} {why}: mxnet ignores it and warns on every import",
            source,
            "unset MXNET_LIBRARY_PATH",
        )
