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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kmx_tune import keras_config
from kmx_tune.doctor.cuda_libs import check_cuda_libs
from kmx_tune.doctor.environment import (
    check_environment,
    check_kmp_affinity,
    check_library_path,
    check_omp_threads,
    check_python,
    check_subgraph_backend,
)
from kmx_tune.doctor.gpu import check_cudnn_autotune
from kmx_tune.doctor.install_state import check_interrupted_install
from kmx_tune.doctor.keras import check_keras, check_keras_json, check_keras_runtime
from kmx_tune.doctor.model import (
    FAIL,
    OK,
    SCHEMA,
    WARN,
    Check,
    Context,
    Finding,
    MachineCheck,
    MachineContext,
    Report,
    find_keras_python,
)
from kmx_tune.doctor.mxnet import check_mxnet_flavor, check_mxnet_runtime, check_numpy
from kmx_tune.flavors import recommend
from kmx_tune.hardware import HardwareProfile, get_hardware
from kmx_tune.target import MissingTarget, NoTargetError, Target, TargetInfo

if TYPE_CHECKING:
    from kmx_tune.interpreters import Interpreter

__all__ = [
    "FAIL",
    "OK",
    "SCHEMA",
    "WARN",
    "Context",
    "Finding",
    "Report",
    "diagnose",
    "diagnose_machine",
    "run_doctor",
]

CHECKS: tuple[Check, ...] = (
    check_python,
    check_interrupted_install,
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
# What can be checked with no Python environment: keras.json and the variables that
# depend on the machine alone.
MACHINE_CHECKS: tuple[MachineCheck, ...] = (
    check_keras_json,
    check_omp_threads,
    check_subgraph_backend,
    check_library_path,
)


def diagnose(
    target: TargetInfo,
    hw: HardwareProfile,
    *,
    env: Mapping[str, str] | None = None,
    keras_json: keras_config.KerasJsonState | None = None,
    strict: bool = False,
    chosen_by: str = "--python",
    passed_over: tuple[str, ...] = (),
    keras_python: Callable[[], Interpreter | None] = find_keras_python,
) -> Report:
    """Run every check on facts already gathered (pure apart from reading keras.json
    when *keras_json* is not given, listing the mxnet package folder, and, when advice
    needs one, trying a Python 3.6-3.9 found on this machine: *keras_python*)."""
    env = os.environ if env is None else env
    state = keras_json if keras_json is not None else keras_config.read(env=env)
    rec = recommend(hw, (target.version[0], target.version[1]))
    ctx = Context(
        hw=hw, rec=rec, keras_json=state, env=env, find_keras_python=keras_python, target=target
    )
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
        chosen_by=chosen_by,
        passed_over=passed_over,
    )


def diagnose_machine(
    hw: HardwareProfile,
    looked_at: tuple[str, ...],
    *,
    env: Mapping[str, str] | None = None,
    keras_json: keras_config.KerasJsonState | None = None,
    strict: bool = False,
    keras_python: Callable[[], Interpreter | None] = find_keras_python,
    keras_environments: Callable[[], list[str]] | None = None,
) -> Report:
    """The report when there is no Python environment to check (*looked_at*: what was
    considered, and why not): where Keras-MXNet is installed already, or how to make an
    environment for it, and the checks of the machine itself."""
    env = os.environ if env is None else env
    state = keras_json if keras_json is not None else keras_config.read(env=env)
    rec = recommend(hw)
    ctx = MachineContext(hw=hw, rec=rec, keras_json=state, env=env, find_keras_python=keras_python)
    if keras_environments is None:
        from kmx_tune.interpreters import find_keras_environments

        found = find_keras_environments(env)
    else:
        found = keras_environments()
    findings = (check_environment(ctx, looked_at, found),) + tuple(
        f for check in MACHINE_CHECKS for f in check(ctx)
    )
    return Report(
        findings=findings,
        target=None,
        hardware=hw,
        recommendation=rec,
        keras_json=str(state.location.path),
        strict=strict,
        passed_over=looked_at,
    )


def run_doctor(
    target: Target | str | os.PathLike[str] | None,
    hardware_file: str | None = None,
    *,
    deep: bool = False,
    strict: bool = False,
    env: Mapping[str, str] | None = None,
) -> Report:
    """Inspect the target (a Target, a --python value, or None for the default one) and
    the hardware, and check everything; with no environment to check, the checks of the
    machine and how to get one.

    The target interpreter runs its facts script while this process probes the
    hardware (py-cpuinfo on a cold cache, NVML): both mostly wait on other processes
    and libraries, so overlapping them saves most of the shorter one."""
    box: dict[str, Any] = {}
    env = os.environ if env is None else env
    state = keras_config.read(env=env)
    target_env: dict[str, str] | None = None
    missing: NoTargetError | None = None
    found = target if isinstance(target, Target) else Target.find(target, env=env)
    chosen: Target | None = found
    if isinstance(found, MissingTarget):
        chosen, missing = None, found.error
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
                if chosen is not None:
                    box["target"] = chosen.facts(deep=deep, env=target_env)
            except BaseException as exc:  # re-raised in the caller's thread below
                box["error"] = exc

        worker = threading.Thread(target=inspect, name="kmx-inspect-target", daemon=True)
        worker.start()
        try:
            hw = get_hardware(hardware_file)
        finally:
            worker.join()
    if isinstance(box.get("error"), NoTargetError):
        missing = box.pop("error")
    if "error" in box:
        raise box["error"]
    if missing is not None or chosen is None:
        looked = missing.looked_at if missing is not None else ()
        return diagnose_machine(hw, looked, env=env, keras_json=state, strict=strict)
    return diagnose(
        box["target"],
        hw,
        env=env,
        keras_json=state,
        strict=strict,
        chosen_by=chosen.chosen_by,
        passed_over=chosen.passed_over,
    )
