"""Run a Python script under the MXNet profiler, as ``python SCRIPT ARGS`` would run it.

Usage (from kmx-tune): ``python kmx_profile_runner.py --out TRACE --stats STATS -- SCRIPT ARGS...``

Runs INSIDE the target interpreter: stdlib and mxnet only, Python 3.6+ syntax. The
script sees ``sys.argv == [SCRIPT, ARGS...]``, runs as ``__main__`` with its own
folder first on ``sys.path``, in the unchanged working directory; this process exits
with the script's status. The profile collected so far is saved even when the script
raises or calls ``sys.exit``. STATS receives one JSON object: the profiler's aggregate
statistics plus what happened (mxnet version, exit status, the script's error).
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

SCHEMA = "kmx-tune/profile-run/1"
MXNET_MISSING = 3  # exit status when mxnet itself cannot be imported (STATS says so)


def _error_line(exc):
    text = "{}: {}".format(type(exc).__name__, exc)
    return text.splitlines()[0][:500] if text else type(exc).__name__


def _parse(argv):
    """(trace, stats, script, script_args) from --out T --stats S -- SCRIPT ARGS."""
    trace = stats = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest = argv[i + 1 :]
            if not rest:
                break
            return trace, stats, rest[0], rest[1:]
        if arg in ("--out", "--stats") and i + 1 < len(argv):
            if arg == "--out":
                trace = argv[i + 1]
            else:
                stats = argv[i + 1]
            i += 2
            continue
        break
    sys.stderr.write("usage: kmx_profile_runner.py --out TRACE --stats STATS -- SCRIPT [ARGS...]\n")
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


def main(argv):
    trace, stats, script, script_args = _parse(argv)
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

    mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=trace)
    status = 0
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
    finally:
        sys.stdout.flush()
        # let queued operators finish so they are counted; an asynchronous error
        # there is the script's own business
        with contextlib.suppress(Exception):
            mx.nd.waitall()
        try:
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
        report["exit_status"] = status
        _write_stats(stats, report)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
