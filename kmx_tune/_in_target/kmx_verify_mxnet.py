"""Check that the MXNet installed in this interpreter really works; print one JSON object.

Runs INSIDE the target interpreter, in a fresh process after an install: stdlib only,
Python 3.6+ syntax (checked by vermin in CI). It reports facts; kmx-tune judges them.

    python kmx_verify_mxnet.py [--gpu]

Always prints the JSON object, even when ``import mxnet`` fails, so that the caller
can say why. It runs an element-wise operation, ``dot``, ``FullyConnected`` and
``Convolution`` on the CPU (mxnet 1.9.1's bundled OpenBLAS dies in dot with SIGILL on
a CPU without AVX: a crash here is caught before the user's first run), and with
``--gpu`` counts the GPUs and runs the same four on gpu(0). Before each step it writes
``kmx-step: NAME`` to stderr, so that when a step kills the process the caller knows
which one. It also reports where each CUDA library was loaded from (/proc/self/maps)
and, for the runtime, cuDNN, NCCL and the driver, their version.
"""

import json
import os
import re
import sys

# name -> (expected sum, how to compute it); the values are exact in float32
OPS = (
    ("elementwise", 8.0),  # (ones(2,2) * 2).sum()
    ("dot", 262144.0),  # dot(ones(64,64), ones(64,64)).sum(): 64*64*64
    ("fully_connected", 2048.0),  # 2 x 64 inputs, 16 hidden, ones, no bias: 2*16*64
    ("convolution", 42336.0),  # ones (1,3,16,16) * ones (8,3,3,3): 8*14*14*27
)
_CUDA_LIB = re.compile(
    r"/lib(cuda|cudart|cublas|cublasLt|cufft|curand|cusolver|cusparse|nvrtc|cudnn[a-z_]*|nccl"
    r"|nvToolsExt)\.so[^/]*$"
)


def _error_line(exc):
    return "{}: {}".format(type(exc).__name__, exc).strip().splitlines()[0][:500]


def _step(name):
    sys.stderr.write("kmx-step: {}\n".format(name))
    sys.stderr.flush()


def _run_op(mx, name, ctx):
    nd = mx.nd
    if name == "elementwise":
        out = nd.ones((2, 2), ctx=ctx) * 2
    elif name == "dot":
        out = nd.dot(nd.ones((64, 64), ctx=ctx), nd.ones((64, 64), ctx=ctx))
    elif name == "fully_connected":
        out = nd.FullyConnected(
            nd.ones((2, 64), ctx=ctx), nd.ones((16, 64), ctx=ctx), num_hidden=16, no_bias=True
        )
    else:
        out = nd.Convolution(
            nd.ones((1, 3, 16, 16), ctx=ctx),
            nd.ones((8, 3, 3, 3), ctx=ctx),
            kernel=(3, 3),
            num_filter=8,
            no_bias=True,
        )
    return float(out.sum().asscalar())


def run_ops(mx, ctx, where):
    """{name: value} and {name: error} for the four operations on *ctx*."""
    values, errors = {}, {}
    for name, _expected in OPS:
        _step("{} on {}".format(name, where))
        try:
            values[name] = _run_op(mx, name, ctx)
        except Exception as exc:
            errors[name] = _error_line(exc)
    return values, errors


def loaded_libraries():
    """{soname-ish file name: path} of the CUDA libraries this process has mapped."""
    found = {}  # type: dict
    try:
        with open("/proc/self/maps", "r") as handle:
            for line in handle:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if _CUDA_LIB.search(path):
                        found.setdefault(os.path.basename(path), path)
    except OSError:
        pass
    return found


def library_versions(paths):
    """Versions asked of the loaded libraries themselves, where they have a call for it."""
    import ctypes

    calls = (
        ("libcudart", "cudaRuntimeGetVersion", "cuda_runtime"),
        ("libcuda.", "cuDriverGetVersion", "cuda_driver"),
        ("libnccl", "ncclGetVersion", "nccl"),
    )
    found = {}
    for prefix, function, key in calls:
        path = next((p for name, p in paths.items() if name.startswith(prefix)), None)
        if path is None:
            continue
        try:
            value = ctypes.c_int(0)
            status = getattr(ctypes.CDLL(path), function)(ctypes.byref(value))
        except (OSError, AttributeError):
            continue
        if status == 0:
            found[key] = value.value
        else:  # cudaRuntimeGetVersion fails (100, no device) where no GPU is found
            found[key + "_error"] = status
    path = next((p for name, p in paths.items() if name.startswith("libcudnn.so")), None)
    if path is not None:
        try:
            cudnn = ctypes.CDLL(path)
            cudnn.cudnnGetVersion.restype = ctypes.c_size_t
            found["cudnn"] = int(cudnn.cudnnGetVersion())
        except (OSError, AttributeError):
            pass
    return found


def file_versions(paths):
    """{file name: version} read from the file or its pip distribution (kmx_cuda_libs)."""
    try:
        import kmx_cuda_libs
    except ImportError:
        return {}
    found = {}
    for name, path in paths.items():
        try:
            version = kmx_cuda_libs.version_of(path, name)
        except Exception:  # a report, never a failure of the check
            version = None
        if version:
            found[name] = version
    return found


def verify(gpu):
    report = {  # type: dict
        "schema": "kmx-tune/verify-mxnet/2",
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
        "cpu_ops": {},
        "cpu_op_errors": {},
        "num_gpus": None,
        "num_gpus_error": None,
        "gpu_op": None,
        "gpu_op_error": None,
        "gpu_ops": {},
        "gpu_op_errors": {},
        "cuda_libraries": {},
        "cuda_versions": {},
        "wiring": None,
        "environment": dict(
            (k, os.environ[k]) for k in ("MXNET_USE_FUSION", "LD_LIBRARY_PATH") if k in os.environ
        ),
    }
    _step("import mxnet")
    try:
        import mxnet as mx
    except BaseException as exc:  # an ImportError, an OSError from ctypes, a SystemExit
        report["import_error"] = _error_line(exc)
        report["cuda_libraries"] = loaded_libraries()
        return report
    report["mxnet_version"] = getattr(mx, "__version__", None)
    report["mxnet_file"] = getattr(mx, "__file__", None)
    wiring = sys.modules.get("kmx_mxnet_cuda_libs")
    if wiring is not None:
        report["wiring"] = {
            "loaded": list(getattr(wiring, "LOADED", [])),
            "errors": list(getattr(wiring, "ERRORS", [])),
        }
    report["cuda_libraries"] = loaded_libraries()
    report["cuda_versions"] = library_versions(report["cuda_libraries"])
    report["cuda_library_versions"] = file_versions(report["cuda_libraries"])
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        report["numpy_version"] = getattr(numpy, "__version__", None)
    _step("mx.runtime.Features()")
    try:
        features = mx.runtime.Features()
        report["features"] = dict((name, bool(features.is_enabled(name))) for name in features)
    except Exception as exc:  # mxnet older than 1.5 has no runtime.Features
        report["features_error"] = _error_line(exc)
    values, errors = run_ops(mx, mx.cpu(), "cpu")
    report["cpu_ops"], report["cpu_op_errors"] = values, errors
    report["cpu_op"] = values.get("elementwise")
    report["cpu_op_error"] = errors.get("elementwise")
    if gpu:
        _step("mx.context.num_gpus()")
        try:
            report["num_gpus"] = int(mx.context.num_gpus())
        except Exception as exc:  # a CUDA build without a usable driver raises here
            report["num_gpus_error"] = _error_line(exc)
        if report["num_gpus"]:
            values, errors = run_ops(mx, mx.gpu(0), "gpu(0)")
            report["gpu_ops"], report["gpu_op_errors"] = values, errors
            report["gpu_op"] = values.get("elementwise")
            report["gpu_op_error"] = errors.get("elementwise")
    _step("done")
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
