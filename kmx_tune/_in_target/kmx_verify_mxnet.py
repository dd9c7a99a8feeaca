"""Check that the MXNet installed in this interpreter really works; print one JSON object.

Runs INSIDE the target interpreter, in a fresh process after an install: stdlib only,
Python 3.6+ syntax (checked by vermin in CI). It reports facts; kmx-tune judges them.

    python kmx_verify_mxnet.py [--gpu]

Always prints the JSON object, even when ``import mxnet`` fails, so that the caller
can say why. ``--gpu`` also counts the GPUs and runs a tiny operation on gpu(0).
"""

import json
import os
import sys


def _error_line(exc):
    return "{}: {}".format(type(exc).__name__, exc).strip().splitlines()[0][:500]


def verify(gpu):
    report = {  # type: dict
        "schema": "kmx-tune/verify-mxnet/1",
        "python": sys.executable,
        "import_error": None,
        # mxnet loads this file instead of the wheel's libmxnet.so (mxnet/libinfo.py)
        "library_path": os.environ.get("MXNET_LIBRARY_PATH") or None,
        "mxnet_version": None,
        "mxnet_file": None,
        "numpy_version": None,
        "features": None,
        "features_error": None,
        "cpu_op": None,
        "cpu_op_error": None,
        "num_gpus": None,
        "num_gpus_error": None,
        "gpu_op": None,
        "gpu_op_error": None,
    }
    try:
        import mxnet as mx
    except BaseException as exc:  # an ImportError, an OSError from ctypes, a SystemExit
        report["import_error"] = _error_line(exc)
        return report
    report["mxnet_version"] = getattr(mx, "__version__", None)
    report["mxnet_file"] = getattr(mx, "__file__", None)
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        report["numpy_version"] = getattr(numpy, "__version__", None)
    try:
        features = mx.runtime.Features()
        report["features"] = dict((name, bool(features.is_enabled(name))) for name in features)
    except Exception as exc:  # mxnet older than 1.5 has no runtime.Features
        report["features_error"] = _error_line(exc)
    try:
        # A tiny operation: loading libmxnet is not enough, an operator must run.
        value = (mx.nd.ones((2, 2)) * 2).sum().asscalar()
        report["cpu_op"] = float(value)
    except Exception as exc:
        report["cpu_op_error"] = _error_line(exc)
    if gpu:
        try:
            report["num_gpus"] = int(mx.context.num_gpus())
        except Exception as exc:  # a CUDA build without a usable driver raises here
            report["num_gpus_error"] = _error_line(exc)
        if report["num_gpus"]:
            try:
                value = (mx.nd.ones((2, 2), ctx=mx.gpu(0)) * 2).sum().asscalar()
                report["gpu_op"] = float(value)
            except Exception as exc:  # e.g. "no kernel image is available for execution"
                report["gpu_op_error"] = _error_line(exc)
    return report


def main(argv):
    gpu = "--gpu" in argv
    # mxnet and its libraries may print at import (Python or C level): keep fd 1
    # clean for the JSON by pointing it at stderr while mxnet runs.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        report = verify(gpu)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    sys.stdout.write(json.dumps(report))
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
