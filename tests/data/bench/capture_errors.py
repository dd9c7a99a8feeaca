"""Capture real MXNet 1.9.1 error texts as the benchmark sees them (str(exc) and type)."""
import json, sys
import mxnet as mx
out = {}
def grab(name, fn):
    try:
        fn()
    except Exception as exc:
        out[name] = {"type": type(exc).__name__, "text": str(exc)}
def alloc():  # run under `ulimit -v 6000000`: the allocation fails
    x = mx.sym.var("x"); y = mx.sym.Convolution(x, kernel=(3, 3), num_filter=64, pad=(1, 1), no_bias=True)
    e = y.simple_bind(mx.cpu(), x=(40000, 3, 32, 32)); e.forward(); mx.nd.waitall()
def kernel():  # a kernel bigger than the image (a channels_last model run as channels_first)
    x = mx.sym.var("x"); y = mx.sym.Convolution(x, kernel=(3, 3), num_filter=8, no_bias=True)
    y.simple_bind(mx.cpu(), x=(4, 32, 2, 3))
def nd_alloc():  # run under `ulimit -v 6000000`: the allocation fails when the operator runs
    x = mx.nd.zeros((40000, 64, 32, 32)); x.wait_to_read()
def nd_shapes():
    (mx.nd.ones((2, 3)) + mx.nd.ones((4, 5))).wait_to_read()
grab("failed_to_allocate", alloc)
grab("nd_failed_to_allocate", nd_alloc)
grab("nd_shapes", nd_shapes)
grab("kernel_exceeds_input", kernel)
json.dump(out, sys.stdout, indent=1)
