"""Run a Python script under the MXNet profiler, as ``python SCRIPT ARGS`` would run it.

Usage (from kmx-tune)::

    python kmx_profile_runner.py --out TRACE --stats STATS [--steps N] -- SCRIPT ARGS...

Runs INSIDE the target interpreter: stdlib and mxnet only, Python 3.6+ syntax. The
script sees ``sys.argv == [SCRIPT, ARGS...]``, runs as ``__main__`` with its own
folder first on ``sys.path``, in the unchanged working directory; this process exits
with the script's status. The profile collected so far is saved even when the script
raises or calls ``sys.exit``. STATS receives one JSON object: the profiler's aggregate
statistics plus what happened (mxnet version, exit status, the script's error) and
what tells the model's data format:

- every ``BatchNorm`` the script creates (``mx.sym.BatchNorm``, ``mx.nd.BatchNorm``:
  Keras-MXNet's BatchNormalization and Gluon's BatchNorm both call these): its axis
  and, where it can be known, the data's shape. BatchNorm over the last axis of image
  data is what channels_last makes Keras-MXNet do, and MXNet's CPU BatchNorm is fast
  only over axis 1;
- Keras's ``image_data_format()`` at the end, when the script imported Keras.

(kmx-tune then times BatchNorm over the last axis against axis 1 in a separate process,
``kmx_bn_calibrate.py``, so nothing of that lands in the script's profile or trace.)

``--steps N`` stops the profiler after N training steps, so the trace stays small; the
rest of the script runs unprofiled. A step ends with a backward pass (of a bound graph
-- Keras-MXNet, Module, symbolic executors -- or of autograd -- Gluon); the profiler
stops when the next one starts (a training forward of a bound graph, entering
``autograd.record()``, or a backward).

A child the script forks never runs any of this: when the script returns or raises in
a process that is not the one that started, it flushes its output and leaves with
``os._exit`` (MXNet's profiler calls abort in a forked child).
"""

import builtins
import contextlib
import importlib.util
import json
import os
import runpy
import sys
import traceback
import types
import warnings
import zipfile

SCHEMA = "kmx-tune/profile-run/2"
MXNET_MISSING = 3  # exit status when mxnet itself cannot be imported (STATS says so)


def _error_line(exc):
    text = "{}: {}".format(type(exc).__name__, exc)
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _parse(argv):
    """(trace, stats, steps, script, script_args) from the command line."""
    opts = {"--out": None, "--stats": None, "--steps": None}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest = argv[i + 1 :]
            if not rest:
                break
            steps = int(opts["--steps"]) if opts["--steps"] else None
            return opts["--out"], opts["--stats"], steps, rest[0], rest[1:]
        if arg in opts and i + 1 < len(argv):
            opts[arg] = argv[i + 1]
            i += 2
            continue
        break
    sys.stderr.write(
        "usage: kmx_profile_runner.py --out TRACE --stats STATS [--steps N] -- SCRIPT [ARGS...]\n"
    )
    sys.exit(2)


def _write_stats(path, report):
    tmp = path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(report, handle)
    os.replace(tmp, path)


def _print_script_traceback(exc_type, exc, tb):
    """Print the traceback as Python would for the script: without this runner's
    and runpy's own frames on top."""
    here = os.path.abspath(__file__)

    def ours(frame):
        # runpy shows as "<frozen runpy>" on Python 3.11+, so match it by module name
        if frame.f_globals.get("__name__") == "runpy":
            return True
        return os.path.abspath(frame.f_code.co_filename) == here

    while tb is not None and ours(tb.tb_frame):
        tb = tb.tb_next
    traceback.print_exception(exc_type, exc, tb)
    sys.stderr.flush()


def _run_as_main(script, main_file):
    """Run *script* as ``__main__`` with ``__file__ == main_file`` and ``sys.argv[0]``
    left as given (runpy.run_path would set both to the same path)."""
    with open(script, "rb") as handle:
        source = handle.read()
    if source[:4] == importlib.util.MAGIC_NUMBER or zipfile.is_zipfile(script):
        runpy.run_path(script, run_name="__main__")  # a .pyc or a zip application
        return
    code = compile(source, main_file, "exec", dont_inherit=True)
    module = types.ModuleType("__main__")
    module.__dict__.update(
        {
            "__file__": main_file,
            "__cached__": None,
            "__loader__": None,
            "__package__": None,
            "__spec__": None,
            "__builtins__": builtins,
        }
    )
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


def _exit_status(code):
    """The process status Python gives ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(str(code) + "\n")
    return 1


# --------------------------------------------------------------------------- hooks


class Hooks(object):
    """What the script does that tells its data format, and the step counter."""

    def __init__(self, mx, steps):
        self.mx = mx
        self.batchnorm = {}  # (axis, ndim or None, per-sample shape or None) -> calls
        self.steps = steps
        self.seen = 0
        self.stopped = False
        self.stopped_at = None

    def install(self):
        mx = self.mx
        for module in (mx.sym, mx.nd):
            original = getattr(module, "BatchNorm", None)
            if original is not None:
                module.BatchNorm = self._batchnorm_wrapper(original, module is mx.nd)
        if self.steps is not None:
            executor = mx.executor.Executor
            executor.forward = self._forward_wrapper(executor.forward)
            executor.backward = self._step_wrapper(executor.backward)
            mx.nd.NDArray.backward = self._step_wrapper(mx.nd.NDArray.backward)
            mx.autograd.backward = self._step_wrapper(mx.autograd.backward)
            mx.autograd.record = self._record_wrapper(mx.autograd.record)

    def _batchnorm_wrapper(self, original, imperative):
        hooks = self

        def BatchNorm(*args, **kwargs):  # noqa: N802 (MXNet's name)
            with contextlib.suppress(Exception):  # observing must never break the script
                hooks._note_batchnorm(args, kwargs, imperative)
            return original(*args, **kwargs)

        BatchNorm.__doc__ = original.__doc__
        BatchNorm.__name__ = getattr(original, "__name__", "BatchNorm")
        return BatchNorm

    def _note_batchnorm(self, args, kwargs, imperative):
        data = args[0] if args else kwargs.get("data")
        axis = int(kwargs.get("axis", 1))
        shape = None
        if imperative:
            shape = tuple(data.shape)
        else:
            _, outputs, _ = data.infer_shape_partial()
            if outputs and len(outputs) == 1 and outputs[0]:
                shape = tuple(outputs[0])
        ndim = len(shape) if shape else None
        if ndim is not None:
            axis = axis % ndim
        sample = tuple(shape[1:]) if shape and all(d > 0 for d in shape[1:]) else None
        key = (axis, ndim, sample)
        self.batchnorm[key] = self.batchnorm.get(key, 0) + 1

    def _step_wrapper(self, original):
        """A backward pass ends a training step: count it; the next one after the
        last step to profile stops the profiler first."""
        hooks = self

        def step(*args, **kwargs):
            if hooks.seen >= hooks.steps:
                hooks.stop()
            result = original(*args, **kwargs)
            hooks.seen += 1
            return result

        step.__doc__ = original.__doc__
        step.__name__ = getattr(original, "__name__", "step")
        return step

    def _forward_wrapper(self, original):
        """A training forward of a bound graph after the last step to profile stops
        the profiler first (Keras-MXNet's own evaluations of variables, forward
        passes without training, do not count as steps)."""
        hooks = self

        def forward(self, is_train=False, **kwargs):
            if is_train and hooks.seen >= hooks.steps:
                hooks.stop()
            return original(self, is_train=is_train, **kwargs)

        forward.__doc__ = original.__doc__
        return forward

    def _record_wrapper(self, original):
        """Gluon's training step starts with ``autograd.record()``: after the last step
        to profile, entering it stops the profiler first."""
        hooks = self

        def record(*args, **kwargs):
            if hooks.seen >= hooks.steps:
                hooks.stop()
            return original(*args, **kwargs)

        record.__doc__ = original.__doc__
        return record

    def stop(self):
        """Stop the profiler once the steps so far have finished."""
        if self.stopped:
            return
        with contextlib.suppress(Exception):
            self.mx.nd.waitall()
        self.mx.profiler.set_state("stop")
        self.stopped = True
        self.stopped_at = self.seen

    def batchnorm_report(self):
        return [
            {"axis": axis, "ndim": ndim, "shape": list(sample) if sample else None, "calls": n}
            for (axis, ndim, sample), n in sorted(self.batchnorm.items(), key=str)
        ]


def _keras_format():
    """Keras's image_data_format() when the script imported Keras, else None."""
    keras = sys.modules.get("keras")
    backend = getattr(keras, "backend", None)
    getter = getattr(backend, "image_data_format", None)
    if getter is None:
        return None
    try:
        value = getter()
    except Exception:
        return None
    return value if value in ("channels_first", "channels_last") else None


def main(argv):
    trace, stats, steps, script, script_args = _parse(argv)
    if trace is None or stats is None:
        sys.stderr.write("kmx_profile_runner.py: --out and --stats are required\n")
        return 2
    report = {  # type: dict
        "schema": SCHEMA,
        "mxnet_version": None,
        "mxnet_error": None,
        "aggregate": None,
        "aggregate_error": None,
        "trace": None,
        "exit_status": None,
        "script_error": None,
        "steps": steps,
        "profiled_steps": None,
        "batchnorm": [],
        "keras_format": None,
    }
    # Warnings from a failing import (numpy 1.24's np.bool FutureWarning) would only
    # clutter kmx-tune's one-line error; after a good import they show as usual.
    with warnings.catch_warnings(record=True) as caught:
        try:
            import mxnet as mx
        except Exception as exc:  # not installed, or installed but broken (numpy 1.24+)
            report["mxnet_error"] = _error_line(exc)
            _write_stats(stats, report)
            return MXNET_MISSING
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
    report["mxnet_version"] = getattr(mx, "__version__", None)

    # As `python SCRIPT ARGS`: argv as given; the script's real folder (symlinks
    # resolved) first on sys.path, not ours; __file__ absolute from Python 3.9 on.
    sys.argv = [script] + list(script_args)
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    main_file = os.path.abspath(script) if sys.version_info >= (3, 9) else script

    hooks = Hooks(mx, steps)
    hooks.install()
    # Operators and memory, not every C API call: those (shape and dtype queries while
    # Keras builds its graphs) were three quarters of a Keras trace and tell nothing
    # about where training time goes.
    mx.profiler.set_config(
        profile_symbolic=True,
        profile_imperative=True,
        profile_memory=True,
        profile_api=False,
        aggregate_stats=True,
        filename=trace,
    )
    status = 0
    pid = os.getpid()
    mx.profiler.set_state("run")
    try:
        _run_as_main(script, main_file)
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _print_script_traceback(type(exc), exc, exc.__traceback__)
        report["script_error"] = "KeyboardInterrupt"
        status = 130
    except BaseException as exc:  # the script's own failure: Python prints it, exits 1
        _print_script_traceback(type(exc), exc, exc.__traceback__)
        report["script_error"] = _error_line(exc)
        status = 1
    if os.getpid() != pid:
        # a child the script forked and did not end itself: it must not touch the
        # parent's profiler (MXNet aborts) nor write the parent's statistics
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)
    try:
        sys.stdout.flush()
        # let queued operators finish so they are counted; an asynchronous error
        # there is the script's own business
        with contextlib.suppress(Exception):
            mx.nd.waitall()
        if steps is not None:
            report["profiled_steps"] = hooks.stopped_at if hooks.stopped else hooks.seen
        try:
            if not hooks.stopped:
                mx.profiler.set_state("stop")
            report["aggregate"] = json.loads(mx.profiler.dumps(format="json"))
        except Exception as exc:
            report["aggregate_error"] = _error_line(exc)
        try:
            mx.profiler.dump()
            if os.path.isfile(trace):
                report["trace"] = os.path.abspath(trace)
        except Exception as exc:
            report["aggregate_error"] = report["aggregate_error"] or _error_line(exc)
        report["keras_format"] = _keras_format()
        report["batchnorm"] = hooks.batchnorm_report()
    finally:
        report["exit_status"] = status
        _write_stats(stats, report)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
