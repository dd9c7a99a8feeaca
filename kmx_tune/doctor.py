"""``kmx-tune doctor``: checks -> Findings (ok / warn / fail, where the facts came
from, the exact command that fixes a problem) -> a Report whose exit code is computed
from the findings. A new check is one function added to CHECKS (or DEEP_CHECKS).

Nothing here imports numpy or mxnet: the target interpreter is inspected by a
stdlib-only script (kmx_tune.target), and only ``--deep`` imports mxnet there.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmx_tune import keras_config
from kmx_tune.flavors import (
    FLAVORS,
    MIN_DRIVER,
    NUMPY_PIN,
    PY_NEWEST_KERAS_MXNET,
    PY_NEWEST_NUMPY_PIN,
    Recommendation,
    driver_runs,
    gpu_has_kernels,
    recommend,
)
from kmx_tune.hardware import HardwareProfile, get_hardware
from kmx_tune.target import Distribution, TargetInfo, inspect_target, normalize

SCHEMA = "kmx-tune/doctor/1"
OK, WARN, FAIL = "ok", "warn", "fail"
KERAS_MXNET = "keras-mxnet==2.2.4.3"
KMP_AFFINITY = "granularity=fine,compact,1,0"  # MXNet performance guide


@dataclass(frozen=True)
class Finding:
    id: str  # stable name, e.g. "numpy", "env.OMP_NUM_THREADS"
    status: str  # ok | warn | fail
    title: str  # one line: what is right or wrong
    detail: str  # where it came from: "detected: driver 535.104, compute capability 8.6"
    fix: str | None = None  # the exact command that fixes it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "title": self.title,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Context:
    """Everything a check may look at, gathered once."""

    target: TargetInfo
    hw: HardwareProfile
    rec: Recommendation
    keras_json: keras_config.KerasJsonState
    env: Mapping[str, str] = field(repr=False)
    hardware_file: str | None = None

    @property
    def python(self) -> str:
        return self.target.python

    def pip(self, *args: str) -> str:
        return shlex.join([self.python, "-m", "pip", *args])

    def install_mxnet(self) -> str:
        cmd = ["kmx-tune", "install-mxnet", "--python", self.python]
        if self.hardware_file:
            cmd += ["--hardware", self.hardware_file]
        return shlex.join(cmd)

    @property
    def py(self) -> tuple[int, int]:
        return self.target.version[0], self.target.version[1]

    @property
    def py_str(self) -> str:
        return f"Python {self.py[0]}.{self.py[1]}"

    def old_python_route(self) -> str:
        """keras-mxnet needs Python <= 3.9: a venv of its own with the right MXNet."""
        venv = "~/venvs/keras-mxnet"
        reqs = " ".join(shlex.quote(r) for r in (KERAS_MXNET, *self.rec.requirements))
        return (
            f"python3.9 -m venv {venv} && {venv}/bin/python -m pip install {reqs}"
            f" && kmx-tune doctor --python {venv}/bin/python"
        )


Check = Callable[[Context], Iterable[Finding]]


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]
    target: TargetInfo
    hardware: HardwareProfile
    recommendation: Recommendation
    keras_json: str  # path of the keras.json Keras reads
    deep: bool = False

    def count(self, status: str) -> int:
        return sum(1 for f in self.findings if f.status == status)

    def exit_code(self, strict: bool = False) -> int:
        """0 when nothing failed; 1 when a check failed (or warned, with strict)."""
        if self.count(FAIL) or (strict and self.count(WARN)):
            return 1
        return 0

    def to_json(self, strict: bool = False) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "python": self.target.python,
            "python_version": self.target.version_str,
            "deep": self.deep,
            "strict": strict,
            "exit_code": self.exit_code(strict),
            "summary": {s: self.count(s) for s in (OK, WARN, FAIL)},
            "findings": [f.to_json() for f in self.findings],
            "recommendation": self.recommendation.to_json(),
            "hardware": {**self.hardware.to_json(), "source": self.hardware.source},
            "keras_json": self.keras_json,
            "target": self.target.to_json(),
        }


# ---------------------------------------------------------------- the checks


def check_python(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    where = f"detected: {t.implementation} {t.version_str} at {t.executable}" + (
        " (a virtual environment)" if t.in_venv else ""
    )
    if not t.has_pip:
        yield Finding(
            "python",
            WARN,
            f"{ctx.py_str} has no pip: the fixes below need it",
            where,
            shlex.join([ctx.python, "-m", "ensurepip", "--upgrade"]),
        )
        return
    yield Finding("python", OK, f"{ctx.py_str} with pip", where)


_NO_NUMPY_WHEEL = (
    f"mxnet 1.9.1 needs {NUMPY_PIN}, which has no wheel for this Python (numpy 1.23 stops at "
    "Python 3.11; building it from source fails), so pip cannot install it here"
)


def _flavor_detail(ctx: Context) -> str:
    rec = ctx.rec
    return f"recommended: {rec.package} {rec.version} because {rec.reasons[0]}"


def check_mxnet_flavor(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    rec, hw = ctx.rec, ctx.hw
    if not dists:
        if ctx.py > PY_NEWEST_NUMPY_PIN:
            yield Finding(
                "mxnet",
                FAIL,
                f"MXNet is not installed, and mxnet {rec.version} cannot be on {ctx.py_str}",
                f"detected: {ctx.py_str} at {ctx.python}; {_NO_NUMPY_WHEEL}",
                ctx.old_python_route(),
            )
            return
        yield Finding(
            "mxnet", FAIL, "MXNet is not installed", _flavor_detail(ctx), ctx.install_mxnet()
        )
        return
    if len(dists) > 1:
        listed = ", ".join(f"{d.name} {d.version}" for d in dists)
        yield Finding(
            "mxnet",
            FAIL,
            f"{len(dists)} MXNet flavors are installed at once: {listed}",
            "they all install the same `mxnet` module, so their files overwrite each other "
            f"(detected: pip metadata in {dists[0].location or ctx.target.prefix}); "
            + _flavor_detail(ctx),
            ctx.pip("uninstall", "-y", *(d.name for d in dists)) + " && " + ctx.install_mxnet(),
        )
        return
    d = dists[0]
    flavor = FLAVORS.get(normalize(d.name))
    installed = f"{d.name} {d.version}"
    if flavor is None:
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is not a flavor kmx-tune knows",
            _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
        return
    if flavor.cuda is None:
        yield from _cpu_flavor(ctx, d, installed)
        return

    if not hw.gpus or hw.nvidia is None:
        yield Finding(
            "mxnet",
            FAIL,
            f"{installed} is a CUDA {flavor.cuda} build, but this box has no NVIDIA GPU: "
            "import mxnet fails without libcuda",
            f"{hw.origin}: {hw.gpu_summary}; " + _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
        return
    driver, cuda = hw.nvidia.driver_version, hw.nvidia.cuda_driver_version
    if not driver_runs(flavor, driver, cuda):
        need = MIN_DRIVER.get(flavor.cuda, "a newer one")
        yield Finding(
            "mxnet",
            FAIL,
            f"{installed} needs CUDA {flavor.cuda}, newer than the driver supports",
            f"{hw.origin}: driver {driver} supports CUDA {cuda}; CUDA {flavor.cuda} needs driver "
            f"{need} or newer (NVIDIA CUDA release notes); " + _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
        return
    uncovered = [g for g in hw.gpus if not gpu_has_kernels(flavor, g.compute_capability)]
    if uncovered:
        gpus = ", ".join(f"{g.name} ({g.compute_capability})" for g in uncovered)
        detail = (
            f"{hw.origin}: {gpus}; {d.name} has machine code for compute capability "
            f"{' '.join(flavor.compute_capabilities)} and no PTX, so GPU work fails with "
            f'"no kernel image is available for execution on the device"; ' + _flavor_detail(ctx)
        )
        if rec.build_from_source:
            detail += "\n" + rec.build_from_source
        yield Finding(
            "mxnet",
            FAIL,
            f"{installed} has no kernels for {gpus}",
            detail,
            ctx.install_mxnet(),
        )
        return
    if rec.gpu and _vkey(d.version) < _vkey(rec.version):
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} runs here, but {rec.package} {rec.version} is newer and fits too",
            _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
        return
    yield Finding(
        "mxnet",
        OK,
        f"{installed} runs on every GPU here",
        f"{hw.origin}: {hw.gpu_summary}; {d.name} has kernels for compute capability "
        f"{' '.join(flavor.compute_capabilities)}",
    )


def _cpu_flavor(ctx: Context, d: Distribution, installed: str) -> Iterator[Finding]:
    rec = ctx.rec
    if rec.gpu:
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is a CPU build on a box with a usable NVIDIA GPU",
            _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
    elif normalize(d.name) != rec.package or _vkey(d.version) < _vkey(rec.version):
        yield Finding(
            "mxnet",
            WARN,
            f"{installed} is older than {rec.package} {rec.version}, the newest CPU build "
            "(MKL-DNN built in)",
            _flavor_detail(ctx),
            ctx.install_mxnet(),
        )
    else:
        detail = _flavor_detail(ctx)
        if rec.build_from_source:
            detail += "\nFor GPU training: " + rec.build_from_source
        yield Finding("mxnet", OK, f"{installed} is the recommended flavor", detail)


def check_numpy(ctx: Context) -> Iterator[Finding]:
    dists = ctx.target.mxnet_distributions
    if not dists:
        return  # installing MXNet (the fix above) pins numpy too
    mx = dists[0]
    numpy = ctx.target.numpy_version
    fix = ctx.pip("install", NUMPY_PIN)
    no_wheel = ""
    if ctx.py > PY_NEWEST_NUMPY_PIN:
        fix = ctx.old_python_route()
        no_wheel = f"; {_NO_NUMPY_WHEEL.replace('this Python', ctx.py_str)}"
    if numpy is None:
        yield Finding(
            "numpy",
            FAIL,
            f"numpy is not installed: import mxnet fails without it ({mx.name} {mx.version})",
            f"detected: no numpy distribution in {ctx.python}" + no_wheel,
            fix,
        )
    elif _vkey(numpy) >= (1, 24):
        how = (
            "and mxnet's own requirement (numpy<2.0.0) lets pip install it"
            if _vkey(numpy) < (2,)
            else "mxnet's own requirement is numpy<2.0.0, so another package's "
            "requirement pulled it in"
        )
        yield Finding(
            "numpy",
            FAIL,
            f"numpy {numpy} breaks {mx.name} {mx.version}: import mxnet fails with numpy >= 1.24",
            f"detected: numpy {numpy} in {ctx.python}; numpy 1.24 removed np.bool, which mxnet "
            "uses (AttributeError: module 'numpy' has no attribute 'bool'; mxnet issue 21165); "
            + how
            + no_wheel,
            fix,
        )
    else:
        yield Finding(
            "numpy",
            OK,
            f"numpy {numpy} works with {mx.name} {mx.version}",
            f"detected: numpy {numpy}; mxnet needs numpy<1.24 (mxnet issue 21165)",
        )


def _reinstall_keras_mxnet(ctx: Context) -> str:
    """Put keras-mxnet's files back; plain keras goes first when it is installed (both
    write the module `keras`, and the next upgrade of plain keras would win again)."""
    again = ctx.pip("install", "--force-reinstall", "--no-deps", KERAS_MXNET)
    if ctx.target.dist("keras") is None:
        return again
    return ctx.pip("uninstall", "-y", "keras") + " && " + again


def check_keras(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    km, k, facts = t.dist("keras-mxnet"), t.dist("keras"), t.keras
    old_py = ctx.py <= PY_NEWEST_KERAS_MXNET
    reinstall = _reinstall_keras_mxnet(ctx)
    if facts.module_path is None:
        yield Finding(
            "keras",
            WARN,
            "Keras-MXNet is not installed",
            f"detected: no `keras` module in {ctx.python}",
            ctx.pip("install", KERAS_MXNET) if old_py else ctx.old_python_route(),
        )
        return
    if not facts.has_mxnet_backend:
        what = f"keras {k.version}" if k else "a keras"
        over = " installed over keras-mxnet" if km else ""
        yield Finding(
            "keras",
            FAIL,
            f"`import keras` finds {what}{over}, which has no MXNet backend",
            (
                f"detected: backend/mxnet_backend.py is left in {facts.module_path}, but "
                "backend/__init__.py is plain Keras's and never loads it"
                if facts.mxnet_backend_file
                else f"detected: no backend/mxnet_backend.py in {facts.module_path}"
            )
            + "; keras-mxnet ships as the module `keras`, so `pip install keras` replaces it "
            "(keras-apache-mxnet issue 134)",
            reinstall if old_py else ctx.old_python_route(),
        )
        return
    version = km.version if km else (k.version if k else "?")
    problems = False
    if not old_py:
        problems = True
        yield Finding(
            "keras.python",
            FAIL,
            f"keras-mxnet {version} fails to import on {ctx.py_str}",
            f"detected: {ctx.py_str} at {ctx.python}; keras/callbacks.py does "
            "`from collections import Iterable`, removed in Python 3.10; keras-mxnet needs "
            "Python 3.9 or older",
            ctx.old_python_route(),
        )
    if km and k:
        problems = True
        yield Finding(
            "keras",
            WARN,
            f"both keras {k.version} and keras-mxnet {km.version} are installed",
            f"detected: both in {ctx.python}; they share the module `keras` and the next "
            "`pip install -U keras` replaces the MXNet backend (keras-apache-mxnet issue 134)",
            reinstall,
        )
    if not problems:
        yield Finding(
            "keras",
            OK,
            f"keras-mxnet {version} with the MXNet backend on {ctx.py_str}",
            f"detected: backend/mxnet_backend.py in {facts.module_path}",
        )


def check_keras_json(ctx: Context) -> Iterator[Finding]:
    state = ctx.keras_json
    loc = state.location
    where = f"Keras reads {loc.path} ({loc.source})"
    if loc.notes:
        where += "; " + "; ".join(loc.notes)
    set_format = "kmx-tune set-format channels_first"
    if not state.exists:
        yield Finding(
            "keras.json",
            WARN,
            "no keras.json yet: Keras-MXNet writes one with channels_last on first import",
            where,
            set_format,
        )
    elif state.error:
        # set-format --force replaces bad content but (rightly) not a folder
        fix = (
            f"{shlex.join(['mv', str(loc.path), f'{loc.path}.bak'])} && {set_format}"
            if loc.path.is_dir()
            else set_format + " --force"
        )
        yield Finding("keras.json", FAIL, state.error, where, fix)
        return
    else:
        yield Finding("keras.json", OK, f"keras.json found at {loc.path}", where)

    file_backend = state.values.get("backend")
    override = state.backend_override
    if override is not None and override != "mxnet":
        yield Finding(
            "keras.backend",
            FAIL,
            f"KERAS_BACKEND={override} overrides keras.json's backend",
            f"from the environment: KERAS_BACKEND={override}; keras.json says "
            f"{file_backend or 'nothing (default mxnet)'}",
            "unset KERAS_BACKEND",
        )
    elif file_backend is not None and file_backend != "mxnet":
        if override == "mxnet":
            yield Finding(
                "keras.backend",
                WARN,
                f"keras.json's backend is {file_backend}; only KERAS_BACKEND=mxnet makes it mxnet",
                f"from the environment: KERAS_BACKEND=mxnet; keras.json at {loc.path}: "
                f"backend {file_backend}",
                set_format,
            )
        else:
            yield Finding(
                "keras.backend",
                FAIL,
                f"keras.json's backend is {file_backend}, not mxnet",
                f"from keras.json at {loc.path}",
                set_format,
            )
    else:
        value, source = state.effective["backend"]
        yield Finding("keras.backend", OK, f"backend is {value}", f"from {source}")

    if not state.exists:
        return  # the missing-file warning above already says what Keras will write
    value, source = state.effective["image_data_format"]
    if value != "channels_first":
        yield Finding(
            "keras.image_data_format",
            WARN,
            f"image_data_format is {value}: Keras-MXNet transposes around every convolution",
            f"from {source} ({loc.path}); MXNet runs convolutions in NCHW (channels_first), "
            'and Keras-MXNet warns "MXNet Backend performs best with `channels_first` format"',
            set_format,
        )
    else:
        yield Finding(
            "keras.image_data_format",
            OK,
            "image_data_format is channels_first",
            f"from {source} ({loc.path})",
        )


def check_omp_threads(ctx: Context) -> Iterator[Finding]:
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
            f"{detected}; {guide}",
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


def check_cudnn_autotune(ctx: Context) -> Iterator[Finding]:
    if not ctx.hw.gpus:
        return
    raw = ctx.env.get("MXNET_CUDNN_AUTOTUNE_DEFAULT")
    dists = ctx.target.mxnet_distributions
    flavors = [FLAVORS.get(normalize(d.name)) for d in dists]
    cpu_build = (
        all(f is not None and f.cuda is None for f in flavors)
        if dists
        else not ctx.rec.gpu  # nothing installed: the advice decides (CPU on an H100)
    )
    if cpu_build:
        if raw is not None and dists:
            installed = ", ".join(f"{d.name} {d.version}" for d in dists)
            yield Finding(
                "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
                OK,
                f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw.strip()} has no effect on {installed}, "
                "a CPU build",
                "from the environment; only CUDA builds use cuDNN",
            )
        return
    origin = f"{ctx.hw.origin}: {ctx.hw.gpu_summary}"
    if raw is None:
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            OK,
            "MXNET_CUDNN_AUTOTUNE_DEFAULT unset: cuDNN autotuning on (default 1)",
            f"{origin}; 2 picks the fastest convolution algorithm at the cost of memory",
        )
    elif raw.strip() == "0":
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            WARN,
            "MXNET_CUDNN_AUTOTUNE_DEFAULT=0 turns cuDNN autotuning off",
            f"from the environment; {origin}; convolutions may run slow algorithms",
            "export MXNET_CUDNN_AUTOTUNE_DEFAULT=1",
        )
    elif raw.strip() in ("1", "2"):
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            OK,
            f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw.strip()}",
            f"from the environment; {origin}",
        )
    else:
        yield Finding(
            "env.MXNET_CUDNN_AUTOTUNE_DEFAULT",
            WARN,
            f"MXNET_CUDNN_AUTOTUNE_DEFAULT={raw} is not 0, 1 or 2",
            "from the environment; MXNet env_var reference",
            "export MXNET_CUDNN_AUTOTUNE_DEFAULT=1",
        )


def check_subgraph_backend(ctx: Context) -> Iterator[Finding]:
    raw = ctx.env.get("MXNET_SUBGRAPH_BACKEND")
    if raw is not None and raw.strip().upper() == "NONE" and not ctx.rec.gpu:
        yield Finding(
            "env.MXNET_SUBGRAPH_BACKEND",
            WARN,
            "MXNET_SUBGRAPH_BACKEND=NONE turns MKL-DNN operator fusion off",
            "from the environment; MKLDNN is the default where MKL-DNN is built in",
            "unset MXNET_SUBGRAPH_BACKEND",
        )


def check_library_path(ctx: Context) -> Iterator[Finding]:
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


# ------------------------------------------------------------- --deep checks


def check_mxnet_runtime(ctx: Context) -> Iterator[Finding]:
    rt = ctx.target.runtime
    if rt is None or not ctx.target.mxnet_distributions:
        return
    if rt.mxnet_import_error:
        numpy_related = "numpy" in rt.mxnet_import_error or (
            ctx.target.numpy_version is not None and _vkey(ctx.target.numpy_version) >= (1, 24)
        )
        yield Finding(
            "mxnet.import",
            FAIL,
            "import mxnet fails",
            f"detected (--deep): {rt.mxnet_import_error}",
            ctx.old_python_route()
            if ctx.py > PY_NEWEST_NUMPY_PIN
            else ctx.pip("install", NUMPY_PIN)
            if numpy_related
            else ctx.install_mxnet(),
        )
        return
    features = rt.features or {}
    on = sorted(name for name, enabled in features.items() if enabled)
    shown = [n for n in ("CUDA", "CUDNN", "MKLDNN", "OPENMP", "BLAS_OPEN") if n in on]
    detail = f"detected (--deep): mxnet {rt.mxnet_version}, features {' '.join(shown) or '-'}"
    detail += f", {rt.num_gpus if rt.num_gpus is not None else '?'} GPU(s) visible"
    if features.get("CUDA") and ctx.hw.gpus and not rt.num_gpus:
        yield Finding(
            "mxnet.import",
            FAIL,
            "this CUDA build of mxnet sees no GPU",
            detail,
            ctx.install_mxnet(),
        )
    elif features and not features.get("CUDA") and not features.get("MKLDNN"):
        yield Finding(
            "mxnet.import",
            WARN,
            "this mxnet has neither CUDA nor MKL-DNN: the slowest build",
            detail,
            ctx.install_mxnet(),
        )
    else:
        yield Finding("mxnet.import", OK, f"import mxnet works ({rt.mxnet_version})", detail)


def check_keras_runtime(ctx: Context) -> Iterator[Finding]:
    rt = ctx.target.runtime
    if rt is None or ctx.target.keras.module_path is None:
        return
    if rt.keras_import_error:
        yield Finding(
            "keras.import",
            FAIL,
            "import keras fails",
            f"detected (--deep, KERAS_BACKEND=mxnet): {rt.keras_import_error}",
            ctx.old_python_route()
            if ctx.py > PY_NEWEST_KERAS_MXNET
            else _reinstall_keras_mxnet(ctx),
        )
    else:
        yield Finding(
            "keras.import",
            OK,
            f"import keras works ({rt.keras_version})",
            "detected (--deep, KERAS_BACKEND=mxnet)",
        )


CHECKS: tuple[Check, ...] = (
    check_python,
    check_mxnet_flavor,
    check_numpy,
    check_keras,
    check_keras_json,
    check_omp_threads,
    check_kmp_affinity,
    check_cudnn_autotune,
    check_subgraph_backend,
    check_library_path,
)
DEEP_CHECKS: tuple[Check, ...] = (check_mxnet_runtime, check_keras_runtime)


def _vkey(version: str) -> tuple[int, ...]:
    """Release numbers of a version ("1.24.4" -> (1, 24, 4)); enough to compare the
    numpy and mxnet releases doctor looks at."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version).release
    except InvalidVersion:
        return (0,)


# -------------------------------------------------------------------- entry


def diagnose(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    env: Mapping[str, str] | None = None,
    keras_json: keras_config.KerasJsonState | None = None,
    hardware_file: str | None = None,
) -> Report:
    """Run every check on facts already gathered (pure apart from reading keras.json
    and listing the mxnet package folder)."""
    env = os.environ if env is None else env
    state = keras_json if keras_json is not None else keras_config.read(env=env)
    rec = recommend(hw, (target.version[0], target.version[1]))
    ctx = Context(target, hw, rec, state, env, hardware_file)
    checks = CHECKS + (DEEP_CHECKS if target.runtime is not None else ())
    findings = tuple(f for check in checks for f in check(ctx))
    return Report(
        findings=findings,
        target=target,
        hardware=hw,
        recommendation=rec,
        keras_json=str(state.location.path),
        deep=target.runtime is not None,
    )


def run_doctor(
    python: str | os.PathLike[str] | None = None,
    hardware_file: str | None = None,
    *,
    deep: bool = False,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Inspect *python* (default: this one) and the hardware, and check everything.

    The target interpreter runs its facts script while this process probes the
    hardware (py-cpuinfo on a cold cache, NVML): both mostly wait on other processes
    and libraries, so overlapping them saves most of the shorter one."""
    box: dict[str, Any] = {}
    env = os.environ if env is None else env
    target_env: dict[str, str] | None = None
    with contextlib.ExitStack() as stack:
        if deep and not keras_config.read(env=env).exists:
            # Importing Keras writes a keras.json (channels_last) where it looks when
            # there is none: a check must not, so it writes into a folder that goes away.
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kmx-doctor-"))
            target_env = {**env, "KERAS_HOME": scratch}

        def inspect() -> None:
            try:
                box["target"] = inspect_target(python, deep=deep, env=target_env)
            except BaseException as exc:  # re-raised in the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=inspect, name="kmx-inspect-target", daemon=True)
        worker.start()
        try:
            hw = get_hardware(hardware_file)
        finally:
            worker.join()
    if "error" in box:
        raise box["error"]
    return diagnose(box["target"], hw, env=env, hardware_file=hardware_file)
