"""``kmx-tune doctor``: every check on facts gathered once, then a :class:`Report`.

A check is a function ``Context -> Iterable[Finding]``; a new one is one function in
the module of its family (:mod:`.mxnet`, :mod:`.keras`, :mod:`.environment`,
:mod:`.gpu`) and one entry in :data:`CHECKS` (or :data:`DEEP_CHECKS`, for facts that
only ``--deep`` gathers). Nothing here imports numpy or mxnet: the target interpreter
is inspected by a stdlib-only script, and only ``--deep`` imports mxnet there.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Mapping
from typing import Any

from kmx_tune import keras_config
from kmx_tune.doctor.cuda_libs import check_cuda_libs
from kmx_tune.doctor.environment import (
    check_kmp_affinity,
    check_library_path,
    check_omp_threads,
    check_python,
    check_subgraph_backend,
)
from kmx_tune.doctor.gpu import check_cudnn_autotune
from kmx_tune.doctor.keras import check_keras, check_keras_json, check_keras_runtime
from kmx_tune.doctor.model import FAIL, OK, SCHEMA, WARN, Check, Context, Finding, Report
from kmx_tune.doctor.mxnet import check_mxnet_flavor, check_mxnet_runtime, check_numpy
from kmx_tune.flavors import recommend
from kmx_tune.hardware import HardwareProfile, get_hardware
from kmx_tune.target import Target, TargetInfo

__all__ = [
    "FAIL",
    "OK",
    "SCHEMA",
    "WARN",
    "Context",
    "Finding",
    "Report",
    "diagnose",
    "run_doctor",
]

CHECKS: tuple[Check, ...] = (
    check_python,
    check_mxnet_flavor,
    check_cuda_libs,
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


def diagnose(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    env: Mapping[str, str] | None = None,
    keras_json: keras_config.KerasJsonState | None = None,
    strict: bool = False,
) -> Report:
    """Run every check on facts already gathered (pure apart from reading keras.json
    when *keras_json* is not given, and listing the mxnet package folder)."""
    env = os.environ if env is None else env
    state = keras_json if keras_json is not None else keras_config.read(env=env)
    rec = recommend(hw, (target.version[0], target.version[1]))
    ctx = Context(target, hw, rec, state, env)
    checks = CHECKS + (DEEP_CHECKS if target.runtime is not None else ())
    findings = tuple(f for check in checks for f in check(ctx))
    return Report(
        findings=findings,
        target=target,
        hardware=hw,
        recommendation=rec,
        keras_json=str(state.location.path),
        deep=target.runtime is not None,
        strict=strict,
    )


def run_doctor(
    target: Target,
    hardware_file: str | None = None,
    *,
    deep: bool = False,
    strict: bool = False,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Inspect *target* and the hardware, and check everything.

    The target interpreter runs its facts script while this process probes the
    hardware (py-cpuinfo on a cold cache, NVML): both mostly wait on other processes
    and libraries, so overlapping them saves most of the shorter one."""
    box: dict[str, Any] = {}
    env = os.environ if env is None else env
    state = keras_config.read(env=env)
    target_env: dict[str, str] | None = None
    with contextlib.ExitStack() as stack:
        if deep and (not state.exists or state.kind == "unreadable"):
            # Importing Keras writes a keras.json (channels_last) where it looks when
            # there is none: a check must not, so it writes into a folder that goes away.
            # A keras.json Keras cannot read (a FIFO would hang the import) is reported on
            # its own; the import is checked beside it, in the same kind of folder.
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kmx-doctor-"))
            target_env = {**env, "KERAS_HOME": scratch}

        def inspect() -> None:
            try:
                box["target"] = target.facts(deep=deep, env=target_env)
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
    return diagnose(box["target"], hw, env=env, keras_json=state, strict=strict)
