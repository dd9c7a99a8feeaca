"""Time a small convolution stack, forward and backward, channels_first against the
channels_last path as Keras-MXNet runs it. Prints one JSON object.

Usage: ``python kmx_bench.py --ctx cpu|gpu --batch N --repeats N --warmup N --size S``

Runs INSIDE the target interpreter: stdlib and mxnet only, Python 3.6+ syntax.

The graphs are symbolic and run through a bound executor, as Keras-MXNet's Module
does. Each layer is Convolution(3x3, same padding, with bias) + ReLU:

- channels_first: NCHW input, NCHW convolution;
- channels_last: NHWC input; before each convolution ``transpose(axes=(0, 3, 1, 2))``,
  after it ``transpose(axes=(0, 2, 3, 1))`` -- what keras/backend/mxnet_backend.py's
  _preprocess_convnd_input / _postprocess_convnd_output do, because MXNet's CPU
  convolution does not accept NHWC.

The two forms alternate within each repeat (and swap order every repeat) so that a
machine getting slower or faster during the run hits both alike. Times are seconds
per training step (forward + backward + waitall).
"""

import json
import os
import sys
import time

SCHEMA = "kmx-tune/bench/1"
CHANNELS = (32, 64, 64)
FORMS = ("channels_first", "channels_last")


def _error_line(exc):
    text = "{}: {}".format(type(exc).__name__, exc)
    lines = [line for line in text.splitlines() if line.strip()]
    # MXNet puts its C++ stack first and the message last; keep the informative line
    for line in lines:
        if "no kernel image" in line or "MXNetError" in line or "Check failed" in line:
            return line.strip()[:500]
    return (lines[0] if lines else type(exc).__name__)[:500]


def _parse(argv):
    opts = {"ctx": "cpu", "batch": 32, "repeats": 10, "warmup": 3, "size": 32}
    i = 0
    while i < len(argv):
        key = argv[i].lstrip("-")
        if key not in opts or i + 1 >= len(argv):
            raise SystemExit("usage: kmx_bench.py [--ctx cpu|gpu] [--batch N] [--repeats N]")
        opts[key] = argv[i + 1] if key == "ctx" else int(argv[i + 1])
        i += 2
    return opts


def build(mx, form):
    data = mx.sym.var("data")
    x = data
    cin = 3
    for i, cout in enumerate(CHANNELS):
        weight = mx.sym.var("conv%d_weight" % i, shape=(cout, cin, 3, 3))
        bias = mx.sym.var("conv%d_bias" % i, shape=(cout,))
        if form == "channels_last":
            x = mx.sym.transpose(x, axes=(0, 3, 1, 2))
        x = mx.sym.Convolution(
            x, weight=weight, bias=bias, kernel=(3, 3), pad=(1, 1), num_filter=cout
        )
        if form == "channels_last":
            x = mx.sym.transpose(x, axes=(0, 2, 3, 1))
        x = mx.sym.Activation(x, act_type="relu")
        cin = cout
    return mx.sym.make_loss(mx.sym.mean(x))


def bind(mx, form, ctx, batch, size):
    sym = build(mx, form)
    shape = (batch, 3, size, size) if form == "channels_first" else (batch, size, size, 3)
    grad_req = dict((name, "write") for name in sym.list_arguments())
    grad_req["data"] = "null"
    exe = sym.simple_bind(ctx, data=shape, grad_req=grad_req)
    for name, array in exe.arg_dict.items():
        if name == "data":
            array[:] = mx.nd.random.uniform(0.0, 1.0, shape=array.shape, ctx=ctx)
        else:
            array[:] = mx.nd.random.uniform(-0.1, 0.1, shape=array.shape, ctx=ctx)
    return exe


def step(mx, exe):
    start = time.perf_counter()
    exe.forward(is_train=True)
    exe.backward()
    mx.nd.waitall()
    return time.perf_counter() - start


def run(mx, opts, result):
    ctx = mx.gpu(0) if opts["ctx"] == "gpu" else mx.cpu()
    executors = dict((form, bind(mx, form, ctx, opts["batch"], opts["size"])) for form in FORMS)
    for form in FORMS:
        for _ in range(opts["warmup"]):
            step(mx, executors[form])
    times = dict((form, []) for form in FORMS)  # type: dict
    for r in range(opts["repeats"]):
        order = FORMS if r % 2 == 0 else tuple(reversed(FORMS))
        for form in order:
            times[form].append(step(mx, executors[form]))
    result["times"] = times


def main(argv):
    opts = _parse(argv)
    result = {
        "schema": SCHEMA,
        "mxnet_version": None,
        "ctx": opts["ctx"],
        "batch": opts["batch"],
        "image": [opts["size"], opts["size"], 3],
        "channels": list(CHANNELS),
        "warmup": opts["warmup"],
        "repeats": opts["repeats"],
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_build": None,
        "num_gpus": None,
        "times": None,
        "error": None,
    }
    # MXNet logs (subgraph backend, autotune) go to fd 2; keep fd 1 for the JSON.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        try:
            import mxnet as mx
        except Exception as exc:
            result["error"] = {"kind": "no_mxnet", "message": _error_line(exc)}
            return result
        result["mxnet_version"] = getattr(mx, "__version__", None)
        try:
            features = mx.runtime.Features()
            result["cuda_build"] = bool(features.is_enabled("CUDA"))
        except Exception:
            result["cuda_build"] = None
        if opts["ctx"] == "gpu":
            if result["cuda_build"] is False:
                result["error"] = {"kind": "cpu_build", "message": "MXNet built without CUDA"}
                return result
            try:
                result["num_gpus"] = int(mx.context.num_gpus())
            except Exception as exc:
                result["error"] = {"kind": "no_gpu", "message": _error_line(exc)}
                return result
            if result["num_gpus"] == 0:
                result["error"] = {"kind": "no_gpu", "message": "mx.context.num_gpus() is 0"}
                return result
        try:
            run(mx, opts, result)
        except Exception as exc:
            result["error"] = {"kind": "failed", "message": _error_line(exc)}
        return result
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    report = main(sys.argv[1:])
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    # A CUDA error can leave MXNet's engine threads unable to shut down cleanly.
    os._exit(0)
