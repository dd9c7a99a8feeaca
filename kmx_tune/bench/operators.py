"""Which layer type each MXNet operator belongs to, as Keras-MXNet builds a model:
the one table ``bench`` (where the difference between the formats goes) and
``profile`` (what channels_last costs) both read.

Read from the graphs keras-mxnet 2.2.4.3 builds (``model._train_mxnet_symbol``) for
Conv2D, BatchNormalization, MaxPooling2D, Concatenate, Flatten, Dense, Dropout and
Activation in both formats, and from MXNet 1.9.1 profiles of their training steps.
"""

from __future__ import annotations

from collections.abc import Mapping

BATCHNORM = "BatchNormalization (BatchNorm)"
TRANSPOSES = "layout transposes (transpose)"
CONV = "Conv2D (Convolution)"
POOLING = "pooling (Pooling)"
BIAS_ADD = "bias add (broadcast_add)"
CONCAT = "Concatenate (Concat)"
FLATTEN = "Flatten/Reshape"
DENSE = "Dense (dot, FullyConnected)"
ACTIVATIONS = "activations (LeakyReLU, Activation)"
DROPOUT = "Dropout"
OPTIMIZER = "optimizer updates (*_update)"
LOSS = "loss and metrics (softmax, log, mean, ...)"
ENGINE = "copies and waits (engine)"
OTHER = "other"

# operator name (without _backward_/numpy prefixes, lower case) -> layer type
_KINDS: Mapping[str, str] = {
    "batchnorm": BATCHNORM,
    "batchnorm_v1": BATCHNORM,
    "_sg_mkldnn_batch_norm": BATCHNORM,
    "transpose": TRANSPOSES,
    "swapaxis": TRANSPOSES,
    "swapaxes": TRANSPOSES,
    "convolution": CONV,
    "convolution_v1": CONV,
    "_sg_mkldnn_conv": CONV,
    "deconvolution": CONV,
    "pooling": POOLING,
    "pooling_v1": POOLING,
    "broadcast_add": BIAS_ADD,
    "broadcast_plus": BIAS_ADD,
    "concat": CONCAT,
    "flatten": FLATTEN,
    "reshape": FLATTEN,
    "dot": DENSE,
    "fullyconnected": DENSE,
    "_sg_mkldnn_fully_connected": DENSE,
    "leakyrelu": ACTIVATIONS,
    "activation": ACTIVATIONS,
    "relu": ACTIVATIONS,
    "dropout": DROPOUT,
    "softmax": LOSS,
    "log_softmax": LOSS,
    "softmaxoutput": LOSS,
    "softmax_cross_entropy": LOSS,
    "clip": LOSS,
    "log": LOSS,
    "sum": LOSS,
    "mean": LOSS,
    "argmax": LOSS,
    "cast": LOSS,
    "makeloss": LOSS,
    "blockgrad": LOSS,
    "broadcast_div": LOSS,
    "broadcast_mul": LOSS,
    "broadcast_minus": LOSS,
    "broadcast_equal": LOSS,
    "elemwise_mul": LOSS,
    "_mul_scalar": LOSS,
    "_not_equal_scalar": LOSS,
    "copycpu2cpu": ENGINE,
    "copycpu2gpu": ENGINE,
    "copygpu2cpu": ENGINE,
    "waitforvar": ENGINE,
    "deletevariable": ENGINE,
    "setvalueop": ENGINE,
    "_copy": ENGINE,
    "_zeros": ENGINE,
    "_zeros_without_dtype": ENGINE,
}
_PREFIXES = ("_backward_", "_npi_", "_np_", "_npx_")
_LAYOUT_TRANSPOSES = frozenset({"transpose", "swapaxis", "swapaxes"})


def base_name(name: str) -> str:
    """The operator's name without _backward_ and numpy-frontend prefixes, lower case."""
    key = name.lower()
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def is_layout_transpose(name: str) -> bool:
    """True for transpose / SwapAxis operators and their backward and numpy forms."""
    return base_name(name) in _LAYOUT_TRANSPOSES


def is_batchnorm(name: str) -> bool:
    return _KINDS.get(base_name(name)) == BATCHNORM


def kind_of(name: str) -> str:
    """The layer type an operator belongs to (OTHER when the table does not know it)."""
    key = base_name(name)
    if key.endswith("_update"):
        return OPTIMIZER
    return _KINDS.get(key, OTHER)


def by_kind(ms_by_operator: Mapping[str, float]) -> dict[str, float]:
    """Sum operator times by layer type."""
    out: dict[str, float] = {}
    for name, ms in ms_by_operator.items():
        kind = kind_of(name)
        out[kind] = out.get(kind, 0.0) + ms
    return out
