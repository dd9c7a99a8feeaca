"""Time real training (or inference) steps of one model built in both image data
formats, inside the target interpreter. A worker that kmx-tune drives.

Usage: ``python kmx_bench.py CONFIG_JSON`` where CONFIG_JSON holds::

    {"model": "auto" | "keras" | "symbolic",   # auto: Keras when it imports, else symbolic
     "model_file": null | "path.py", "model_function": null | "build_model",
     "mode": "train" | "inference", "batch": 64, "warmup": 3, "ctx": "cpu" | "gpu",
     "bulk": [null, "0"]}                       # MXNET_EXEC_BULK_EXEC_* per cell; null: as set

Runs INSIDE the target interpreter: stdlib, mxnet, numpy (and keras when there), Python
3.6+ syntax. It is one piece because the target runs it by path, where nothing of
kmx-tune can be imported: the models, the worker and its protocol travel together.

It builds one cell per (format, bulk setting), runs a few warm-up steps in each, then
prints one JSON line (``{"event": "ready", ...}`` or ``{"event": "error",
...}``) and answers commands, one JSON line each, read from stdin:

- ``{"cmd": "run", "cell": I, "steps": K}``: K timed steps of cell I -> ``{"event":
  "times", "cell": I, "seconds": [...]}`` (wall time of each step, synchronised);
- ``{"cmd": "profile", "steps": K}``: K steps of each format under the MXNet profiler
  (fresh models, bound with per-operator detail) -> ``{"event": "profile", "ms_per_step":
  {format: {operator: ms}}}``;
- ``{"cmd": "quit"}``.

The protocol has fd 1 to itself: everything else (MXNet's logs, what the user's model
code prints) goes to fd 2.

The models:

- Keras (keras-mxnet): kmx-tune's representative CNN -- 4 x (Conv2D 3x3 +
  BatchNormalization + ReLU), MaxPooling2D after the 2nd, 3rd and 4th, Flatten, Dense
  128 + ReLU, Dropout 0.5, Dense 10 softmax, Adam, categorical cross-entropy -- or the
  user's FUNCTION from FILE (called with ``K.set_image_data_format(fmt)`` in effect; it
  returns a compiled model). A step is ``model.train_on_batch`` (``predict_on_batch``
  for inference) on random data of the model's input shape.
- symbolic (no Keras): the same network as the graph Keras-MXNet 2.2.4.3 emits for it
  (read from ``model._train_mxnet_symbol``), trained by a Module with Adam. In
  channels_last that is: transposes around every convolution (data and kernel) and
  pooling, the convolution bias as a broadcast_add over the last axis, BatchNorm with
  axis=-1; in channels_first, the bias reshaped to (1, C, 1, 1), BatchNorm axis=1, and
  a transpose before Flatten. The second block is two 16-filter branches joined by a
  Concatenate on the channel axis, so a concatenate is timed too.
"""

import json
import os
import sys
import time
import traceback
from typing import Any, Dict  # noqa: F401 (type comments)

SCHEMA = "kmx-tune/bench-worker/1"
FORMATS = ("channels_first", "channels_last")
BULK_VARS = {"train": "MXNET_EXEC_BULK_EXEC_TRAIN", "inference": "MXNET_EXEC_BULK_EXEC_INFERENCE"}
IMAGE = (32, 32, 3)
CLASSES = 10

# Representative CNN: (filters, max-pool after it); block 1 (index 1) is a Concatenate
# of two half-width branches in the symbolic fallback.
BLOCKS = ((32, False), (32, True), (64, True), (64, True))
DENSE = 128

KERAS_DESCRIPTION = (
    "kmx-tune's representative CNN (Keras): 4 x Conv2D 3x3 + BatchNormalization + ReLU "
    "(32-32-64-64 filters), 3 MaxPooling2D, Flatten, Dense 128, Dropout, Dense 10; Adam"
)
SYMBOLIC_DESCRIPTION = (
    "kmx-tune's representative CNN as the MXNet graph Keras-MXNet 2.2.4.3 builds (no Keras "
    "here): 4 x Convolution 3x3 + bias add + BatchNorm + ReLU (32-32-64-64 filters, the "
    "second as two 16-filter branches joined by a Concatenate), 3 max-pools, Flatten, "
    "Dense 128, Dropout, Dense 10; Adam"
)


class BenchError(Exception):
    def __init__(self, kind, message):
        Exception.__init__(self, message)
        self.kind = kind
        self.message = message


def _is_message(line):
    """A line that states an error (``XError: text``), not a stack frame or MXNet's
    "Traceback (most recent call last):" header."""
    if "Traceback (most recent call last)" in line:
        return False
    if line.startswith(("File ", "[bt]", "Stack trace")):
        return False
    head = line.split(":", 1)[0]
    return (head.endswith(("Error", "Exception")) and ":" in line) or "Check failed" in line


def error_line(exc):
    """One informative line for *exc*. MXNet's errors start with "MXNetError:
    Traceback (most recent call last):" and a C++ stack, and end with the message."""
    text = "{}: {}".format(type(exc).__name__, exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    for line in lines:
        if "no kernel image" in line:
            return line[:500]
    messages = [line for line in lines if _is_message(line)]
    if messages:
        line = messages[-1]
        if not line.split(":", 1)[-1].strip():  # "MemoryError: " says nothing more
            return line.rstrip(": ")[:500]
        return line[:500]
    return lines[0][:500]


def _where(exc, path):
    """The ", line N" of the deepest traceback frame in *path*, if any."""
    if not path:
        return ""
    want = os.path.realpath(path)
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.realpath(frame.filename) == want:
            found = " ({}, line {})".format(os.path.basename(path), frame.lineno)
    return found


# --------------------------------------------------------------------------- models


def keras_representative(keras, ctx):
    from keras import backend as K  # noqa: N812 (Keras's own spelling)

    layers = keras.layers
    h, w, c = IMAGE
    shape = (c, h, w) if K.image_data_format() == "channels_first" else (h, w, c)
    model = keras.models.Sequential()
    for i, (filters, pool) in enumerate(BLOCKS):
        first = {"input_shape": shape} if i == 0 else {}  # type: dict
        model.add(layers.Conv2D(filters, (3, 3), padding="same", **first))
        model.add(layers.BatchNormalization())
        model.add(layers.Activation("relu"))
        if pool:
            model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Flatten())
    model.add(layers.Dense(DENSE, activation="relu"))
    model.add(layers.Dropout(0.5))
    model.add(layers.Dense(CLASSES, activation="softmax"))
    device = {"context": ["gpu(0)"]} if ctx == "gpu" else {}  # type: dict
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"], **device)
    return model


def load_user_function(path, name):
    """FUNCTION from FILE, imported as a module (its ``__main__`` block does not run),
    with FILE's folder first on sys.path as when it runs as a script."""
    import importlib.util

    folder = os.path.dirname(os.path.realpath(path))
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("kmx_bench_user_model", path)
    if spec is None or spec.loader is None:
        raise BenchError("model", "{} cannot be imported as Python".format(path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # the user's file: whatever it raises is a message
        raise BenchError(
            "model", "importing it raised {}{}".format(error_line(exc), _where(exc, path))
        ) from None
    func = getattr(module, name, None)
    if func is None:
        raise BenchError("model", "{} defines no {}".format(os.path.basename(path), name))
    if not callable(func):
        raise BenchError("model", "{} is not a function".format(name))
    return func


def _shapes(value):
    """A Keras shape or list of shapes -> list of tuples."""
    if isinstance(value, list):
        return [tuple(v) for v in value]
    return [tuple(value)]


def keras_data(np, model, batch, rng):
    """Random inputs and targets that fit *model* and its loss."""
    inputs = [
        rng.uniform(0.0, 1.0, size=(batch,) + tuple(d or 1 for d in s[1:])).astype("float32")
        for s in _shapes(model.input_shape)
    ]
    losses = getattr(model, "loss", None)
    if isinstance(losses, dict):
        losses = [losses.get(name) for name in getattr(model, "output_names", [])]
    if not isinstance(losses, (list, tuple)) or not losses:
        losses = [losses] * len(_shapes(model.output_shape))
    targets = []
    for shape, loss in zip(_shapes(model.output_shape), losses):
        name = loss if isinstance(loss, str) else getattr(loss, "__name__", "")
        dims = tuple(d or 1 for d in shape[1:])
        if "sparse" in (name or ""):
            classes = dims[-1] if dims else 1
            targets.append(rng.randint(0, classes, size=(batch,) + dims[:-1] + (1,)))
        elif len(dims) == 1 and dims[0] > 1:
            targets.append(np.eye(dims[0], dtype="float32")[rng.randint(0, dims[0], size=batch)])
        else:
            targets.append(rng.uniform(0.0, 1.0, size=(batch,) + dims).astype("float32"))
    unwrap = lambda items: items[0] if len(items) == 1 else items  # noqa: E731
    return unwrap(inputs), unwrap(targets)


class KerasCell(object):
    def __init__(self, keras, np, fmt, config, rng, func=None):
        from keras import backend as K  # noqa: N812

        self.fmt = fmt
        K.set_image_data_format(fmt)
        if config.get("model_file"):
            try:
                model = func()
            except BaseException as exc:
                line = error_line(exc)
                hint = ""
                words = ("shape", "kernel size", "dimension")
                if fmt == "channels_first" and any(w in line.lower() for w in words):
                    hint = (
                        "; it must build for K.image_data_format(): (C, H, W) inputs for "
                        "channels_first"
                    )
                raise BenchError(
                    "model",
                    "{}() raised {} when built for {}{}{}".format(
                        config["model_function"],
                        line,
                        fmt,
                        _where(exc, config["model_file"]),
                        hint,
                    ),
                ) from None
            if not hasattr(model, "train_on_batch") or not hasattr(model, "input_shape"):
                raise BenchError(
                    "model",
                    "{}() returned {}, not a Keras model".format(
                        config["model_function"], type(model).__name__
                    ),
                )
        else:
            model = keras_representative(keras, config["ctx"])
        self.model = model
        self.x, self.y = keras_data(np, model, config["batch"], rng)
        self.inference = config["mode"] == "inference"
        import mxnet

        self.mx = mxnet

    def step(self):
        """One step, finished: train_on_batch returns once the loss is known, with the
        optimizer's updates still queued in MXNet's engine; without waitall they would
        be billed to whatever runs next (the other format, when they alternate)."""
        if self.inference:
            self.model.predict_on_batch(self.x)
        else:
            self.model.train_on_batch(self.x, self.y)
        self.mx.nd.waitall()

    def describe(self):
        from collections import Counter

        counts = Counter(type(layer).__name__ for layer in self.model.layers)
        return {
            "input_shape": [list(s) for s in _shapes(self.model.input_shape)],
            "layers": dict(counts),
            "params": int(self.model.count_params()),
        }


def _conv(mx, x, fmt, name, cin, cout):
    """A Conv2D as Keras-MXNet emits it: no_bias convolution, then the bias added."""
    bias = mx.sym.var(name + "_bias", shape=(cout,))
    if fmt == "channels_last":
        kernel = mx.sym.var(name + "_weight", shape=(3, 3, cin, cout))
        x = mx.sym.transpose(x, axes=(0, 3, 1, 2))
        kernel = mx.sym.transpose(kernel, axes=(3, 2, 0, 1))
    else:
        kernel = mx.sym.var(name + "_weight", shape=(cout, cin, 3, 3))
    x = mx.sym.Convolution(
        data=x, weight=kernel, kernel=(3, 3), pad=(1, 1), num_filter=cout, no_bias=True
    )
    if fmt == "channels_last":
        x = mx.sym.transpose(x, axes=(0, 2, 3, 1))
        return mx.sym.broadcast_add(x, bias)
    return mx.sym.broadcast_add(x, mx.sym.Reshape(bias, shape=(1, cout, 1, 1)))


def symbolic_representative(mx, fmt):
    axis = 1 if fmt == "channels_first" else 3
    x = mx.sym.var("data")
    cin = IMAGE[2]
    for i, (filters, pool) in enumerate(BLOCKS):
        name = "conv%d" % i
        if i == 1:  # two half-width branches, concatenated on the channel axis
            half = filters // 2
            a = _conv(mx, x, fmt, name + "a", cin, half)
            b = _conv(mx, x, fmt, name + "b", cin, filters - half)
            x = mx.sym.concat(a, b, dim=axis)
        else:
            x = _conv(mx, x, fmt, name, cin, filters)
        x = mx.sym.BatchNorm(
            x, name="bn%d" % i, axis=-1 if axis == 3 else 1, eps=1e-3, momentum=0.99
        )
        x = mx.sym.LeakyReLU(x, act_type="leaky", slope=0.0)
        if pool:
            if fmt == "channels_last":
                x = mx.sym.transpose(x, axes=(0, 3, 1, 2))
            x = mx.sym.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max")
            if fmt == "channels_last":
                x = mx.sym.transpose(x, axes=(0, 2, 3, 1))
        cin = filters
    if fmt == "channels_first":  # Keras-MXNet's Flatten keeps channels_last order
        x = mx.sym.transpose(x, axes=(0, 2, 3, 1))
    x = mx.sym.Flatten(x)
    side = IMAGE[0] // 8
    for name, n_in, n_out, last in (
        ("dense0", side * side * cin, DENSE, False),
        ("dense1", DENSE, CLASSES, True),
    ):
        weight = mx.sym.var(name + "_weight", shape=(n_in, n_out))
        x = mx.sym.broadcast_add(mx.sym.dot(x, weight), mx.sym.var(name + "_bias", shape=(n_out,)))
        if not last:
            x = mx.sym.LeakyReLU(x, act_type="leaky", slope=0.0)
            x = mx.sym.Dropout(x, p=0.5)
    probs = mx.sym.softmax(x, axis=-1)
    label = mx.sym.var("label")
    clipped = mx.sym.clip(probs, 1e-7, 1 - 1e-7)
    loss = mx.sym.mean(-mx.sym.sum(label * mx.sym.log(clipped), axis=-1))
    return mx.sym.Group([mx.sym.MakeLoss(loss), mx.sym.BlockGrad(probs)])


class SymbolicCell(object):
    def __init__(self, mx, np, fmt, config, rng):
        self.fmt = fmt
        ctx = mx.gpu(0) if config["ctx"] == "gpu" else mx.cpu()
        batch = config["batch"]
        h, w, c = IMAGE
        shape = (batch, c, h, w) if fmt == "channels_first" else (batch, h, w, c)
        module = mx.mod.Module(
            symbolic_representative(mx, fmt),
            data_names=["data"],
            label_names=["label"],
            context=ctx,
        )
        module.bind(data_shapes=[("data", shape)], label_shapes=[("label", (batch, CLASSES))])
        module.init_params(mx.init.Xavier())
        module.init_optimizer(optimizer="adam")
        data = mx.nd.array(rng.uniform(0.0, 1.0, size=shape).astype("float32"), ctx=ctx)
        label = mx.nd.array(
            np.eye(CLASSES, dtype="float32")[rng.randint(0, CLASSES, size=batch)], ctx=ctx
        )
        self.batch = mx.io.DataBatch(data=[data], label=[label])
        self.module = module
        self.mx = mx
        self.input_shape = shape
        self.step = self.infer if config["mode"] == "inference" else self.train

    def train(self):
        self.module.forward_backward(self.batch)
        self.module.update()
        self.mx.nd.waitall()

    def infer(self):
        self.module.forward(self.batch, is_train=False)
        self.mx.nd.waitall()

    def describe(self):
        return {
            "input_shape": [[None] + list(self.input_shape[1:])],
            "layers": {
                "Conv2D": 5,
                "BatchNormalization": 4,
                "Concatenate": 1,
                "MaxPooling2D": 3,
                "Flatten": 1,
                "Dense": 2,
                "Dropout": 1,
            },
            "params": None,
        }


# --------------------------------------------------------------------------- worker


class Worker(object):
    def __init__(self, config, facts):
        self.config = config
        self.facts = facts
        self.mx = None  # type: Any
        self.np = None  # type: Any
        self.keras = None  # type: Any
        self.user_function = None  # type: Any
        self.cells = []

    def start(self):
        config, facts = self.config, self.facts
        try:
            import mxnet as mx
        except Exception as exc:
            raise BenchError("no_mxnet", error_line(exc)) from None
        self.mx = mx
        facts["mxnet_version"] = getattr(mx, "__version__", None)
        try:
            facts["cuda_build"] = bool(mx.runtime.Features().is_enabled("CUDA"))
        except Exception:
            facts["cuda_build"] = None
        if config["ctx"] == "gpu":
            self._check_gpu()
        import numpy as np

        self.np = np
        self._choose_model()
        rng = np.random.RandomState(0)
        var = BULK_VARS[config["mode"]]
        before = os.environ.get(var)
        for fmt in FORMATS:
            for bulk in config["bulk"]:
                self._set_env(var, before if bulk is None else bulk)
                try:
                    cell = self._build(fmt, rng)
                    for _ in range(max(1, config["warmup"])):
                        cell.step()  # the first step binds the graph: bulk is read then
                except BenchError:
                    raise
                except Exception as exc:
                    raise BenchError(self._failure_kind(), self._failure(exc, fmt)) from None
                finally:
                    self._set_env(var, before)
                self.cells.append((fmt, bulk, cell))
        facts["model"] = dict(self.cells[0][2].describe(), kind=facts["model_kind"])
        facts["model"]["input_shapes"] = {
            fmt: cell.describe()["input_shape"] for fmt, bulk, cell in self.cells
        }
        self._check_shapes()
        facts["cells"] = [{"format": fmt, "bulk": bulk} for fmt, bulk, _ in self.cells]

    def _failure_kind(self):
        return "model" if self.config.get("model_file") else "failed"

    def _failure(self, exc, fmt):
        if self.config.get("model_file"):
            return "the model built for {} failed to {}: {}{}".format(
                fmt,
                "predict" if self.config["mode"] == "inference" else "train",
                error_line(exc),
                _where(exc, self.config["model_file"]),
            )
        return error_line(exc)

    def _check_gpu(self):
        mx, facts = self.mx, self.facts
        if facts["cuda_build"] is False:
            raise BenchError("cpu_build", "MXNet built without CUDA")
        try:
            facts["num_gpus"] = int(mx.context.num_gpus())
        except Exception as exc:
            raise BenchError("no_gpu", error_line(exc)) from None
        if facts["num_gpus"] == 0:
            raise BenchError("no_gpu", "mx.context.num_gpus() is 0")

    def _choose_model(self):
        config, facts = self.config, self.facts
        want = config["model"]
        if want in ("auto", "keras") or config.get("model_file"):
            try:
                import keras
                from keras import backend as K  # noqa: N812

                if K.backend() != "mxnet":
                    raise ImportError("Keras runs on the {} backend".format(K.backend()))
                self.keras = keras
                facts["keras_version"] = getattr(keras, "__version__", None)
            except Exception as exc:
                facts["keras_error"] = error_line(exc)
                if want == "keras" or config.get("model_file"):
                    raise BenchError("no_keras", facts["keras_error"]) from None
        if self.keras is not None:
            facts["model_kind"] = "user" if config.get("model_file") else "keras"
            facts["description"] = None if config.get("model_file") else KERAS_DESCRIPTION
        else:
            facts["model_kind"] = "symbolic"
            facts["description"] = SYMBOLIC_DESCRIPTION

    def _build(self, fmt, rng):
        if self.keras is not None:
            if self.config.get("model_file") and self.user_function is None:
                # imported once: a module that loads data at import does it once
                self.user_function = load_user_function(
                    self.config["model_file"], self.config["model_function"]
                )
            return KerasCell(self.keras, self.np, fmt, self.config, rng, self.user_function)
        return SymbolicCell(self.mx, self.np, fmt, self.config, rng)

    def _check_shapes(self):
        """The user's FUNCTION must build for the format in effect: channels_first
        input (C, H, W) where channels_last has (H, W, C)."""
        if not self.config.get("model_file"):
            return
        shapes = self.facts["model"]["input_shapes"]
        first, last = shapes["channels_first"][0], shapes["channels_last"][0]
        if len(last) >= 4 and list(first) == list(last):
            raise BenchError(
                "model",
                "{}() built the same input shape {} for channels_first and channels_last: "
                "it must read K.image_data_format() and build (C, H, W) inputs for "
                "channels_first".format(self.config["model_function"], tuple(last[1:])),
            )

    @staticmethod
    def _set_env(name, value):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def run(self, index, steps):
        cell = self.cells[index][2]
        seconds = []
        for _ in range(steps):
            start = time.perf_counter()
            cell.step()
            seconds.append(time.perf_counter() - start)
        return seconds

    def profile(self, steps, folder):
        """Per-step operator times of each format from the MXNet profiler. Models bound
        while aggregate statistics are on get no bulk execution (per-operator detail)."""
        mx = self.mx
        mx.profiler.set_config(
            profile_symbolic=True,
            profile_imperative=True,
            aggregate_stats=True,
            filename=os.path.join(folder, "kmx-bench-profile.json"),
        )
        var = BULK_VARS[self.config["mode"]]
        before = os.environ.get(var)
        self._set_env(var, "0")
        rng = self.np.random.RandomState(1)
        try:
            cells = [self._build(fmt, rng) for fmt in FORMATS]
            for cell in cells:
                cell.step()
        finally:
            self._set_env(var, before)
        totals = dict((fmt, {}) for fmt in FORMATS)  # type: Dict[str, Dict[str, float]]
        for _ in range(steps):
            for cell in cells:
                mx.nd.waitall()
                mx.profiler.set_state("run")
                cell.step()
                mx.nd.waitall()
                mx.profiler.set_state("stop")
                stats = json.loads(mx.profiler.dumps(format="json", reset=True))
                for domain, ops in (stats.get("Time") or {}).items():
                    if domain == "MXNET_C_API" or not isinstance(ops, dict):
                        continue
                    for name, stat in ops.items():
                        table = totals[cell.fmt]
                        table[name] = table.get(name, 0.0) + float(stat.get("Total") or 0.0)
        return dict(
            (fmt, dict((name, ms / steps) for name, ms in ops.items()))
            for fmt, ops in totals.items()
        )


def main(argv):
    config = json.loads(argv[0])
    facts = {
        "schema": SCHEMA,
        "event": "ready",
        "mxnet_version": None,
        "keras_version": None,
        "keras_error": None,
        "model_kind": None,
        "description": None,
        "cuda_build": None,
        "num_gpus": None,
        "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "pid": os.getpid(),
    }
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # MXNet's logs and the model code's prints: stderr

    def send(message):
        proto.write(json.dumps(message) + "\n")
        proto.flush()

    worker = Worker(config, facts)
    try:
        worker.start()
    except BenchError as exc:
        send(dict(facts, event="error", kind=exc.kind, message=exc.message))
        return
    except Exception as exc:
        send(dict(facts, event="error", kind="failed", message=error_line(exc)))
        return
    send(facts)
    folder = config.get("scratch") or "."
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        command = json.loads(line)
        try:
            if command["cmd"] == "run":
                seconds = worker.run(command["cell"], command["steps"])
                send({"event": "times", "cell": command["cell"], "seconds": seconds})
            elif command["cmd"] == "profile":
                send({"event": "profile", "ms_per_step": worker.profile(command["steps"], folder)})
            else:
                return
        except Exception as exc:
            send({"event": "error", "kind": "failed", "message": error_line(exc)})
            return


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    # A CUDA error can leave MXNet's engine threads unable to shut down cleanly.
    os._exit(0)
