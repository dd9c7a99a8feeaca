"""Time MXNet's BatchNorm over the last axis of channels_last image data against the
same BatchNorm over axis 1 (channels_first), as it runs inside a model. Prints one JSON
object.

Usage: ``python kmx_bn_calibrate.py SHAPES_JSON`` where SHAPES_JSON is a list of
``{"axis": A, "shape": [per-sample shape]}`` (channels_last: the channel axis last).

Runs INSIDE the target interpreter: stdlib and mxnet only, Python 3.6+ syntax. For
each shape it binds two small training graphs, each a convolution followed by the
BatchNorm -- as Keras-MXNet builds them: in channels_last with transposes around the
convolution and the BatchNorm over the last axis, in channels_first with neither --
and reads the BatchNorm operators' own time (forward and backward) from the MXNet
profiler's aggregate statistics: the fastest of a few alternating steps of each. A
BatchNorm timed on its own would mislead: after a convolution MXNet hands it MKL-DNN's
own data layout, which is what makes axis 1 fast.
"""

import json
import os
import sys
import tempfile

BATCH = 32
STEPS = 5  # timed steps of each form, alternating, after one warm-up step


def _graph(mx, axis, ndim, channels, form):
    data = mx.sym.var("data")
    weight = mx.sym.var("w", shape=(channels, channels) + (1,) * (ndim - 2))
    kernel = (1,) * (ndim - 2)
    if form == "last":
        to_first = (0, ndim - 1) + tuple(range(1, ndim - 1))
        to_last = (0,) + tuple(range(2, ndim)) + (1,)
        x = mx.sym.transpose(data, axes=to_first)
        x = mx.sym.Convolution(x, weight=weight, kernel=kernel, num_filter=channels, no_bias=True)
        x = mx.sym.transpose(x, axes=to_last)
        return mx.sym.BatchNorm(x, axis=axis, eps=1e-3, momentum=0.99, name="kmx_bn")
    x = mx.sym.Convolution(data, weight=weight, kernel=kernel, num_filter=channels, no_bias=True)
    return mx.sym.BatchNorm(x, axis=1, eps=1e-3, momentum=0.99, name="kmx_bn")


def _bind(mx, sym, shape):
    exe = sym.simple_bind(mx.cpu(), data=shape, grad_req="write")
    for array in exe.arg_dict.values():
        array[:] = mx.nd.random.uniform(-0.5, 0.5, shape=array.shape)
    head = mx.nd.ones(exe.outputs[0].shape)

    def step():
        exe.forward(is_train=True)
        exe.backward(out_grads=[head])
        mx.nd.waitall()

    return step


def _batchnorm_ms(stats):
    total = 0.0
    for domain, ops in (stats.get("Time") or {}).items():
        if domain == "MXNET_C_API" or not isinstance(ops, dict):
            continue
        for name, stat in ops.items():
            if "BatchNorm" in name:
                total += float(stat.get("Total") or 0.0)
    return total


def calibrate(mx, entries, folder):
    mx.profiler.set_config(
        profile_symbolic=True,
        aggregate_stats=True,
        filename=os.path.join(folder, "kmx-bn-calibrate.json"),
    )
    out = []
    for entry in entries:
        axis = int(entry["axis"])
        sample = tuple(int(d) for d in entry["shape"])
        ndim = len(sample) + 1
        channels = sample[axis - 1]
        last = (BATCH,) + sample
        rest = tuple(d for i, d in enumerate(sample) if i != axis - 1)
        first = (BATCH, channels) + rest
        steps = {
            "last": _bind(mx, _graph(mx, axis, ndim, channels, "last"), last),
            "first": _bind(mx, _graph(mx, axis, ndim, channels, "first"), first),
        }
        for step in steps.values():
            step()
        times = {"last": [], "first": []}  # type: dict
        for _ in range(STEPS):
            for form, step in sorted(steps.items()):
                mx.profiler.set_state("run")
                step()
                mx.profiler.set_state("stop")
                stats = json.loads(mx.profiler.dumps(reset=True, format="json"))
                times[form].append(_batchnorm_ms(stats))
        # the fastest step of each: other work on the machine only ever adds time
        out.append(
            {
                "axis": axis,
                "shape": list(sample),
                "batch": BATCH,
                "ms": min(times["last"]),
                "channels_first_ms": min(times["first"]),
            }
        )
    return out


def main(argv):
    entries = json.loads(argv[0])
    result = {"schema": "kmx-tune/bn-calibrate/1", "timings": [], "error": None}  # type: dict
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # MXNet's logs go to fd 2; fd 1 is for the JSON
    try:
        import mxnet as mx

        with tempfile.TemporaryDirectory(prefix="kmx-bn-") as folder:
            result["timings"] = calibrate(mx, entries, folder)
    except Exception as exc:
        result["error"] = "{}: {}".format(type(exc).__name__, exc).splitlines()[0][:300]
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    return result


if __name__ == "__main__":
    report = main(sys.argv[1:])
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    os._exit(0)
