"""``kmx-tune profile``: run a script in the target interpreter under the MXNet
profiler and summarise where the operator time went.

The script runs in a child process (``_in_target/kmx_profile_runner.py``) with this
process's stdin, stdout and stderr, so it behaves as under ``python SCRIPT ARGS``.
The runner writes the profiler's aggregate statistics to a JSON file, which is all
this module reads back; the Chrome trace goes where the user asked.

What channels_last costs (:class:`Layout`): Keras-MXNet runs a channels_last model
with transposes around every convolution and pooling, and BatchNormalization over the
last axis, which MXNet's CPU BatchNorm runs several times slower than over axis 1
(a real CIFAR-like CNN: 47% of its operator time in channels_last, against 285 ms
of 4,596 ms in channels_first). The runner records each BatchNorm's axis and data
shape and times one forward+backward in both forms after the script; with those,
the saving is estimated per operator group from this profile.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, TargetError, UsageError
from kmx_tune.fsio import not_a_file
from kmx_tune.profiling.layout import BatchNormUse, Layout, layout_from
from kmx_tune.profiling.result import ProfileResult, result_from_report
from kmx_tune.profiling.stats import OperatorStat, operators_from_aggregate
from kmx_tune.target import IN_TARGET_DIR, Target

__all__ = [
    "BatchNormUse",
    "Layout",
    "OperatorStat",
    "ProfileResult",
    "default_trace_path",
    "layout_from",
    "operators_from_aggregate",
    "profile_script",
    "result_from_report",
]

RUNNER = IN_TARGET_DIR / "kmx_profile_runner.py"
MXNET_MISSING = 3  # the runner's exit status when mxnet cannot be imported

# Bulk execution fuses a hybridized/symbolic graph's operators into one engine task,
# which then shows in the profile as a single block; 0 turns it off (MXNet env_var docs).
BULK_EXEC_OFF: Mapping[str, str] = {
    "MXNET_EXEC_BULK_EXEC_TRAIN": "0",
    "MXNET_EXEC_BULK_EXEC_INFERENCE": "0",
}

CALIBRATE_TIMEOUT_S = 120.0

# A trace bigger than this gets a hint about --steps.
LARGE_TRACE_BYTES = 10 * 1024 * 1024


def default_trace_path(script: str | os.PathLike[str]) -> Path:
    """``SCRIPTNAME.profile.json`` in the current directory."""
    return Path.cwd() / f"{Path(script).stem}.profile.json"


def profile_script(
    script: str | os.PathLike[str],
    args: Sequence[str] = (),
    *,
    target: Target,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    steps: int | None = None,
    script_stdout_to_stderr: bool = False,
) -> ProfileResult:
    """Run *script* with *args* in the target interpreter under the MXNet profiler.

    The script inherits stdin, stdout and stderr (stdout goes to stderr when
    *script_stdout_to_stderr*, so that ``--json`` output stays clean). An existing
    trace file is replaced only with *force*, as ``convert`` replaces outputs. With
    *steps*, the profiler stops after that many steps. Raises UsageError for a missing
    script or a bad trace path, KmxError for an existing trace without *force* and
    when mxnet cannot be imported."""
    script_path = Path(script)
    if not script_path.is_file():
        what = not_a_file(script_path)
        raise UsageError(f"{script}: {what}; give the path of the Python script to profile")
    if steps is not None and steps < 1:
        raise UsageError(f"--steps {steps}: must be at least 1")
    trace = Path(out).expanduser() if out is not None else default_trace_path(script_path)
    trace = trace.absolute()
    if trace.is_dir():
        name = f"--out {out}" if out is not None else str(trace)
        raise UsageError(
            f"{name}: is a folder; give a file name for the trace with --out, such as "
            "--out profile.json"
        )
    if not trace.parent.is_dir():
        raise UsageError(f"--out {out or trace}: folder {trace.parent} does not exist")
    if (trace.exists() or trace.is_symlink()) and not force:
        raise KmxError(
            f"{trace} exists; pass --force to overwrite it, or write the trace elsewhere "
            "with --out FILE"
        )
    _check_writable(trace)

    env = dict(os.environ)
    env.update(BULK_EXEC_OFF)
    with tempfile.TemporaryDirectory(prefix="kmx-profile-") as tmp:
        stats = Path(tmp) / "stats.json"
        cmd = [target.python, str(RUNNER), "--out", str(trace), "--stats", str(stats)]
        if steps is not None:
            cmd += ["--steps", str(steps)]
        cmd += ["--", os.fspath(script), *args]
        # fd 2 by number: the script's output must bypass any Python-level wrapper
        stdout = 2 if script_stdout_to_stderr else None
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=stdout)
        except OSError as exc:
            raise TargetError(
                f"{target.python}: cannot run it ({exc.strerror or exc}); give the path of a "
                "Python 3.6+ interpreter with --python"
            ) from None
        try:
            status = proc.wait()
        except KeyboardInterrupt:
            # The child got the same SIGINT; let it save its profile and finish.
            status = proc.wait()
        report = _read_report(stats)
    if report is not None and status != MXNET_MISSING:
        report["batchnorm_timing"] = time_batchnorm(target, report.get("batchnorm") or (), env)

    if status == MXNET_MISSING and report is not None and report.get("mxnet_error"):
        raise KmxError(
            f"mxnet cannot be imported in {target.python} ({report['mxnet_error']}); install it "
            f"with `kmx-tune install-mxnet --python {target.python}` and check the set-up with "
            f"`kmx-tune doctor --python {target.python}`"
        )
    if status < 0:  # killed by a signal: report it the way a shell does
        status = 128 - status
    return result_from_report(
        report,
        script=os.fspath(script),
        args=args,
        python=target.python,
        exit_status=status,
        env=BULK_EXEC_OFF,
        steps=steps,
    )


# At most this many BatchNorm shapes are timed (each takes well under a second).
MAX_TIMED_SHAPES = 12


def time_batchnorm(
    target: Target, records: Sequence[Mapping[str, Any]], env: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Time each BatchNorm the script ran over the last axis of image data against the
    same on axis 1, in a fresh process in the target (``kmx_bn_calibrate.py``): the
    runner's records in, the timings (with ``ndim`` and ``calls``) out. Empty when there
    is nothing to time or the timing fails: the advice then says it could not be timed."""
    todo: dict[tuple[int, tuple[int, ...]], int] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        shape, ndim, axis = record.get("shape"), record.get("ndim"), record.get("axis")
        if not isinstance(shape, list) or not isinstance(ndim, int) or not isinstance(axis, int):
            continue
        if ndim < 3 or axis == 1 or len(shape) != ndim - 1:
            continue
        key = (axis, tuple(int(d) for d in shape))
        todo[key] = todo.get(key, 0) + int(record.get("calls") or 0)
    if not todo:
        return []
    entries = [{"axis": a, "shape": list(s)} for a, s in list(todo)[:MAX_TIMED_SHAPES]]
    try:
        proc = target.run_script(
            "kmx_bn_calibrate.py", [json.dumps(entries)], env=env, timeout=CALIBRATE_TIMEOUT_S
        )
    except KmxError:
        return []
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    try:
        timings = json.loads(lines[-1]).get("timings") if lines else None
    except ValueError:
        return []
    out = []
    for timing in timings or ():
        key = (int(timing["axis"]), tuple(int(d) for d in timing["shape"]))
        out.append(dict(timing, ndim=len(key[1]) + 1, calls=todo.get(key, 0), shape=list(key[1])))
    return out


def _check_writable(trace: Path) -> None:
    """Fail before the script runs when the trace cannot be written: MXNet's profiler
    gives up silently. Opening for append creates nothing that stays and truncates
    nothing that exists."""
    existed = trace.exists()
    try:
        with open(trace, "ab"):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot write the trace {trace} ({exc.strerror or exc}); choose a writable "
            "place with --out FILE"
        ) from None
    if not existed:
        with contextlib.suppress(OSError):
            trace.unlink()


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
