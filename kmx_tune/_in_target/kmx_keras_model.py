"""Convert a saved Keras model between channels_last and channels_first, inside the
target interpreter, with its own Keras, and prove the result.

Run by ``kmx-tune convert MODEL.h5`` (kmx_tune/convert/keras_model.py). Python 3.6+
syntax (checked by vermin); imports the target's keras, numpy and h5py.

    kmx_keras_model.py --input M.h5 --to channels_first --output TMP.h5
    kmx_keras_model.py --input W.h5 --architecture M.json --to ... --output TMP.h5
                       --architecture-output TMP.json
    (no --output: analyse and prove in memory, write nothing: a dry run)

How: every tensor of the old model gets a state that says how the same tensor looks
in the new model: "same"; "image" (the new tensor is the old one transposed by a
permutation: channels moved); "flat" (a 2-D tensor whose features are the old ones
in another order, after a Flatten). A table of rules, one per layer class, edits the
layer's config (data_format, axes, shapes) and weights (a Dense after a Flatten has
its kernel rows reordered) and gives the state of its output. Convolution kernels are
stored in one layout in Keras whatever the data_format, so they are kept. A layer
with no rule that receives an image tensor, a Lambda or a custom layer is refused
with its name. The proof: on random inputs the new model, saved and loaded back from
the file written, gives the old model's outputs (transposed as its state says)
within the tolerance; else the script says so and kmx-tune publishes nothing.

Prints one JSON object on stdout; anything Keras prints goes to stderr. The script is
one piece because it runs as a single file inside the target interpreter, where
kmx_tune itself is not importable: the rule table, the graph walk and the proof
travel together.
"""

import argparse
import json
import os
import sys

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
SAMPLES = 8
RTOL = 1e-4  # |new - old| <= ATOL * max(1, max|old|) + RTOL * |old|, element by element
ATOL = 1e-5


class Refused(Exception):
    def __init__(self, message, layer=None):
        Exception.__init__(self, message)
        self.layer = layer


# -- layer classes ----------------------------------------------------------------------

# layers whose data_format says where the channels are, on 4-D / 5-D image tensors
DATA_FORMAT_LAYERS = {
    "Conv2D",
    "Conv3D",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "SeparableConv2D",
    "DepthwiseConv2D",
    "MaxPooling2D",
    "MaxPooling3D",
    "AveragePooling2D",
    "AveragePooling3D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding2D",
    "ZeroPadding3D",
    "Cropping2D",
    "Cropping3D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    "Convolution2D",
    "Convolution3D",
    "MaxPool2D",
    "MaxPool3D",
    "AvgPool2D",
    "AvgPool3D",
}
GLOBAL_POOLING = {
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
}
# element by element, no weights: the output is laid out as the input
ELEMENTWISE = {
    "Dropout",
    "LeakyReLU",
    "ELU",
    "ThresholdedReLU",
    "ReLU",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
}
MERGE = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"}
# weights laid out by position: no rule can move them with the channels
REFUSED_ON_IMAGES = {
    "LocallyConnected2D": "its weights are laid out per position and channel order",
    "ConvLSTM2D": "its time axis sits where channels_first puts the channels",
    "PReLU": "its alpha weights have the image's shape",
    "Dot": "it multiplies along fixed axes",
    "RepeatVector": "it needs 2-D input",
}


def permutation(ndim, to):
    """Axes for numpy.transpose that take a batch to ``to`` (as kmx_tune.convert.layout)."""
    if to == CHANNELS_FIRST:
        return (0, ndim - 1) + tuple(range(1, ndim - 1))
    return (0,) + tuple(range(2, ndim)) + (1,)


def _inverse(perm):
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


class State(object):
    """How a tensor of the old model looks in the new one."""

    def __init__(self, kind, perm=None, sigma=None):
        self.kind = kind  # "same", "image" or "flat"
        self.perm = perm  # image: new = old.transpose(perm) (batch axis included)
        self.sigma = sigma  # flat: new[:, j] = old[:, sigma[j]]

    def key(self):
        if self.kind == "flat":
            return ("flat", tuple(int(i) for i in self.sigma))
        return (self.kind, self.perm)

    def describe(self):
        if self.kind == "image":
            return "image, axes %s" % (self.perm,)
        return self.kind


SAME = State("same")


def flat_or_same(np, sigma):
    if sigma is None or np.array_equal(sigma, np.arange(len(sigma))):
        return SAME
    return State("flat", sigma=sigma)


# -- the rules --------------------------------------------------------------------------


class Graph(object):
    """What a rule may need beyond its own layer: who uses each tensor, the model's
    outputs, and the weight functions and reports of the layers done so far."""

    def __init__(self, model, nodes):
        # (layer name, node index) -> how many inputs and outputs take it
        self.uses = {}  # type: dict
        for layer in model.layers:
            for i, node in enumerate(layer._inbound_nodes):
                if nodes is not None and "%s_ib-%d" % (layer.name, i) not in nodes:
                    continue
                for src, ni in zip(node.inbound_layers, node.node_indices):
                    self.uses[(src.name, ni)] = self.uses.get((src.name, ni), 0) + 1
        for src, ni, _ti in model._output_coordinates:
            self.uses[(src.name, ni)] = self.uses.get((src.name, ni), 0) + 1
        self.weights = {}  # layer name -> function old weights -> new weights
        self.report = {}  # layer name -> its report entry

    def add_weights(self, name, f):
        before = self.weights.get(name)
        self.weights[name] = f if before is None else (lambda ws: f(before(ws)))

    def reorder_features(self, c, tau):
        """Make the features feeding ``c``'s layer come out in the order ``tau``
        (new[:, j] = old[:, tau[j]]): back through element-wise layers and
        BatchNormalization, each used once, to the Dense that makes them."""
        node = c.node
        while True:
            if len(node.inbound_layers) != 1:
                c.refuse("turns features from several layers into an image")
            layer, ni = node.inbound_layers[0], node.node_indices[0]
            name, cls = layer.name, layer.__class__.__name__
            if self.uses.get((name, ni), 0) != 1 or len(layer._inbound_nodes) != 1:
                c.refuse("turns features into an image, and '%s' is used elsewhere too" % name)
            entry = self.report.get(name)
            if cls == "Dense":
                self.add_weights(name, lambda ws: [ws[0][:, tau]] + [w[tau] for w in ws[1:]])
                note = "kernel columns reordered: the Reshape after it makes a %s image" % c.to
            elif (
                cls == "BatchNormalization"
                or cls in ELEMENTWISE
                or (cls == "Activation" and layer.get_config().get("activation") != "softmax")
            ):
                if cls == "BatchNormalization":
                    self.add_weights(name, lambda ws: [w[tau] for w in ws])
                note = "features in the order of the %s image made after it" % c.to
            else:
                c.refuse("turns features into an image, and '%s' (%s) makes them" % (name, cls))
            if entry is not None:
                entry["changes"].append(note)
            if cls == "Dense":
                return
            node = layer._inbound_nodes[ni]


class Conversion(object):
    """One layer on one node: its config (edited in place), its input states and shapes."""

    def __init__(self, np, to, layer, cfg, states, in_shapes, out_shapes, backend, graph, node):
        self.np = np
        self.backend = backend
        self.graph = graph
        self.node = node
        self.to = to
        self.layer = layer
        self.cfg = cfg
        self.states = states
        self.in_shapes = in_shapes
        self.out_shapes = out_shapes
        self.changes = []
        self.weights = None  # a function old weights -> new weights, when they change

    def refuse(self, why):
        raise Refused(
            "layer '%s' (%s): %s" % (self.layer.name, self.layer.__class__.__name__, why),
            self.layer.name,
        )

    def only_input(self):
        if len(self.states) != 1:
            self.refuse("expected one input")
        return self.states[0]

    def set(self, key, value):
        old = self.cfg.get(key)
        if old != value:
            self.cfg[key] = value
            self.changes.append("%s %s -> %s" % (key, _show(old), _show(value)))

    def image_out(self):
        rank = len(self.out_shapes[0])
        return State("image", perm=permutation(rank, self.to))

    def map_axis(self, axis, state, rank):
        a = axis % rank
        return state.perm.index(a)


def _show(v):
    if isinstance(v, list):
        v = tuple(v)
    return repr(v) if isinstance(v, str) else str(v)


# Keras-MXNet (unlike Keras on TensorFlow or Theano) stores a channels_first layer's
# kernel in MXNet's own order (keras/layers/convolutional.py, `K.backend() == 'mxnet'`):
# Conv and ConvTranspose kernels as (B, A) + kernel_size instead of kernel_size + (A, B),
# depthwise kernels as (A, B) + kernel_size. Per class: the order of its weights.
KERNELS = {
    "Conv2D": ("conv",),
    "Conv3D": ("conv",),
    "Convolution2D": ("conv",),
    "Convolution3D": ("conv",),
    "Conv2DTranspose": ("conv",),
    "Conv3DTranspose": ("conv",),
    "SeparableConv2D": ("depthwise", "conv"),
    "DepthwiseConv2D": ("depthwise",),
}


def kernel_axes(style, rank, to):
    """numpy.transpose axes that move one kernel of a ``rank``-D convolution to ``to``."""
    spatial = tuple(range(rank))
    if to == CHANNELS_FIRST:
        return ((rank + 1, rank) if style == "conv" else (rank, rank + 1)) + spatial
    moved = tuple(range(2, rank + 2))
    return moved + ((1, 0) if style == "conv" else (0, 1))


def rule_data_format(c):
    s = c.only_input()
    if s.kind != "image":
        c.refuse("expected an image tensor from the layers before it")
    c.set("data_format", c.to)
    styles = KERNELS.get(c.layer.__class__.__name__)
    if styles and c.backend == "mxnet":
        rank = len(c.in_shapes[0]) - 2
        axes = [kernel_axes(style, rank, c.to) for style in styles]

        def move(ws):
            return [w.transpose(a) for w, a in zip(ws, axes)] + list(ws[len(axes) :])

        c.weights = move
        c.changes.append(
            "kernel axes %s (Keras-MXNet's %s kernel order)"
            % (", ".join(str(a) for a in axes), c.to)
        )
    if c.layer.__class__.__name__ in GLOBAL_POOLING:
        return SAME
    return c.image_out()


def rule_elementwise(c):
    s = c.only_input()
    ns = c.cfg.get("noise_shape")
    if ns is not None and s.kind == "image":
        c.set("noise_shape", [ns[i] for i in s.perm])
    return s


def rule_activation(c):
    s = c.only_input()
    if s.kind == "image" and c.cfg.get("activation") == "softmax":
        c.refuse("softmax runs over the last axis, which channels_first moves")
    return s


def rule_softmax(c):
    s = c.only_input()
    if s.kind == "image":
        c.set("axis", c.map_axis(c.cfg.get("axis", -1), s, len(c.in_shapes[0])))
    return s


def rule_batchnorm(c):
    s = c.only_input()
    axis = c.cfg.get("axis", -1)
    rank = len(c.in_shapes[0])
    if s.kind == "image":
        if isinstance(axis, (list, tuple)):
            c.set("axis", [c.map_axis(a, s, rank) for a in axis])
        else:
            c.set("axis", c.map_axis(axis, s, rank))
    elif s.kind == "flat":
        if axis % rank != rank - 1:
            c.refuse("normalizes an axis other than the features of a Flatten")
        sigma = s.sigma
        c.weights = lambda ws: [w[sigma] for w in ws]
        c.changes.append("weights reordered: the features are flattened in %s order" % c.to)
    return s


def rule_flatten(c):
    np = c.np
    s = c.only_input()
    shape = tuple(c.in_shapes[0][1:])
    old_df = c.cfg.get("data_format", CHANNELS_LAST)
    if s.kind == "same":
        return SAME
    if s.kind != "image":
        c.refuse("expected an image tensor")
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    old_flat = np.moveaxis(idx, 0, -1).ravel() if old_df == CHANNELS_FIRST else idx.ravel()
    new_in = idx.transpose([p - 1 for p in s.perm[1:]])
    # flatten the new tensor as it lies, without a transpose: data_format channels_last
    # is how Keras says "do not reorder before flattening"
    c.set("data_format", CHANNELS_LAST)
    inv = np.empty_like(old_flat)
    inv[old_flat] = np.arange(old_flat.size)
    out = flat_or_same(np, inv[new_in.ravel()])
    if out.kind == "flat":
        c.changes.append("flattens in %s order, without a transpose" % c.to)
    return out


def rule_reshape(c):
    np = c.np
    s = c.only_input()
    target = tuple(c.cfg["target_shape"])
    if s.kind == "same":
        if len(target) not in (3, 4):
            return SAME
        # features made into an image (a generator's Dense -> Reshape): the new model reads
        # them in the new order, so the layers that make them produce that order
        out = State("image", perm=permutation(len(target) + 1, c.to))
        nb = [p - 1 for p in out.perm[1:]]
        new_target = tuple(target[i] for i in nb)
        tau = np.arange(int(np.prod(target))).reshape(target).transpose(nb).ravel()
        c.graph.reorder_features(c, tau)
        c.set("target_shape", list(new_target))
        return out
    if s.kind == "flat":
        c.refuse("reshapes reordered Flatten features")
    shape = tuple(c.in_shapes[0][1:])
    out_shape = tuple(c.out_shapes[0][1:])
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    new_in = idx.transpose([p - 1 for p in s.perm[1:]])
    if len(out_shape) == 1:
        old_flat = idx.reshape(-1)
        inv = np.empty_like(old_flat)
        inv[old_flat] = np.arange(old_flat.size)
        return flat_or_same(np, inv[new_in.ravel()])
    if len(out_shape) + 1 not in (4, 5):
        c.refuse("reshapes an image to a shape that is not an image")
    out = State("image", perm=permutation(len(out_shape) + 1, c.to))
    nb = [p - 1 for p in out.perm[1:]]
    new_target = tuple(out_shape[i] for i in nb)
    if not np.array_equal(new_in.reshape(new_target), idx.reshape(out_shape).transpose(nb)):
        c.refuse("mixes the channels with other axes; no channels_first form exists")
    c.set("target_shape", list(new_target))
    return out


def rule_permute(c):
    np = c.np
    s = c.only_input()
    if s.kind != "image":
        return s if s.kind == "same" else c.refuse("permutes reordered Flatten features")
    d = (0,) + tuple(c.cfg["dims"])
    p = s.perm
    pinv = _inverse(p)
    e = tuple(pinv[d[p[i]]] for i in range(len(p)))
    shape = tuple(c.in_shapes[0][1:])
    idx = np.arange(int(np.prod(shape))).reshape((1,) + shape)
    if not np.array_equal(idx.transpose(p).transpose(e), idx.transpose(d).transpose(p)):
        c.refuse("no channels_first form found")
    c.set("dims", list(e[1:]))
    return s


def rule_dense(c):
    s = c.only_input()
    if s.kind == "image":
        c.refuse("a Dense on an image tensor acts on its last axis, which channels_first moves")
    if s.kind == "flat":
        sigma = s.sigma
        c.weights = lambda ws: [ws[0][sigma]] + list(ws[1:])
        c.changes.append(
            "kernel rows reordered: the features before it are flattened in %s order" % c.to
        )
    return SAME


def rule_concatenate(c):
    np = c.np
    kinds = set(s.kind for s in c.states)
    rank = len(c.in_shapes[0])
    axis = c.cfg.get("axis", -1) % rank
    if kinds == {"same"}:
        return SAME
    if kinds == {"image"}:
        perms = set(s.perm for s in c.states)
        if len(perms) != 1:
            c.refuse("joins image tensors of different layouts")
        s = c.states[0]
        c.set("axis", c.map_axis(axis, s, rank))
        return s
    if rank == 2 and axis == 1 and "image" not in kinds:
        parts, offset = [], 0
        for s, shape in zip(c.states, c.in_shapes):
            n = int(shape[-1])
            sig = s.sigma if s.kind == "flat" else np.arange(n)
            parts.append(sig + offset)
            offset += n
        return flat_or_same(np, np.concatenate(parts))
    c.refuse("joins image and non-image tensors")
    return SAME


def rule_merge(c):
    keys = set(s.key() for s in c.states)
    if len(keys) != 1:
        c.refuse("combines tensors whose layouts differ")
    return c.states[0]


def rule_input(c):
    return SAME  # InputLayer: its state is set where the graph starts


RULES = {"Flatten": rule_flatten, "Reshape": rule_reshape, "Permute": rule_permute}
RULES.update({"Dense": rule_dense, "Concatenate": rule_concatenate})
RULES.update({"BatchNormalization": rule_batchnorm, "Activation": rule_activation})
RULES.update({"Softmax": rule_softmax, "InputLayer": rule_input})
RULES.update({name: rule_data_format for name in DATA_FORMAT_LAYERS | GLOBAL_POOLING})
RULES.update({name: rule_elementwise for name in ELEMENTWISE})
RULES.update({name: rule_merge for name in MERGE})


def rule_for(layer):
    name = layer.__class__.__name__
    rule = RULES.get(name)
    if rule is not None:
        return rule

    def generic(c):
        if any(s.kind != "same" for s in c.states):
            why = REFUSED_ON_IMAGES.get(name, "kmx-tune has no rule for it on an image tensor")
            c.refuse(why)
        return SAME

    return generic


# -- reading the model ------------------------------------------------------------------


def layer_configs(config):
    """(class_name, config) of every layer in a model config, nested models included."""
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, list):  # Sequential before Keras 2.2
        layers = inner
    elif isinstance(inner, dict):
        layers = inner.get("layers", [])
    else:
        layers = []
    for item in layers:
        if not isinstance(item, dict):
            continue
        yield item.get("class_name"), item.get("config") or {}
        if item.get("class_name") in ("Model", "Sequential"):
            for sub in layer_configs(item):
                yield sub


def check_classes(keras, config):
    """Refuse, before anything is loaded, a model that holds code (Lambda), custom
    layers or nested models."""
    from keras.engine.base_layer import Layer

    for cls, cfg in layer_configs(config):
        name = cfg.get("name", "?")
        if cls == "Lambda":
            raise Refused(
                "layer '%s' is a Lambda: it holds Python code, which kmx-tune does not run "
                "from a model file, so no conversion of it can be proven" % name,
                name,
            )
        if cls in ("Model", "Sequential"):
            raise Refused(
                "layer '%s' is a nested model: save it on its own and convert that" % name, name
            )
        known = getattr(keras.layers, str(cls), None)
        if not (isinstance(known, type) and issubclass(known, Layer)):
            raise Refused(
                "layer '%s' is a custom layer (%s), not a Keras one: kmx-tune cannot prove a "
                "conversion of it" % (name, cls),
                name,
            )


def read_config(args, h5py):
    if args.architecture:
        with open(args.architecture) as fh:
            return json.load(fh)
    with h5py.File(args.input, "r") as f:
        raw = f.attrs.get("model_config")
    if raw is None:
        raise Refused("no model_config in the file: not a model saved with model.save()")
    return json.loads(_text(raw))


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else value


def read_weights(h5py, path):
    """{layer name: [arrays]} from a model file or a weights file. Read here rather than
    by Keras 2.2's loader, which fails under h5py 3 (attributes come back as str)."""
    with h5py.File(path, "r") as f:
        g = f.get("model_weights", f)
        found = {}
        for name in g.attrs["layer_names"]:
            name = _text(name)
            lg = g[name]
            found[name] = [lg[_text(w)][()] for w in lg.attrs["weight_names"]]
    return found


def build(keras, config, weights):
    model = keras.models.model_from_json(json.dumps(config))
    for name, ws in weights.items():
        if ws:
            model.get_layer(name).set_weights(ws)
    return model


def image_formats(model):
    return sorted(
        set(
            layer.get_config().get("data_format")
            for layer in model.layers
            if layer.__class__.__name__ in DATA_FORMAT_LAYERS | GLOBAL_POOLING
        )
    )


def _shapes(shape):
    return list(shape) if isinstance(shape, list) else [shape]


def convert_graph(np, model, to, backend):
    """Edited layer configs by name, weight functions by name, the report per layer, and
    the states of the model's inputs and outputs."""
    states = {}  # (layer name, node index, tensor index) -> State
    configs, report = {}, []
    nodes = getattr(model, "_network_nodes", None)
    graph = Graph(model, nodes)
    input_layers = list(getattr(model, "_input_layers", []))
    input_states = []
    for layer in input_layers:
        shape = layer.batch_input_shape
        s = State("image", perm=permutation(len(shape), to)) if len(shape) in (4, 5) else SAME
        states[(layer.name, 0, 0)] = s
        input_states.append(s)
    layers = list(model.layers)
    for layer in layers:
        if layer in input_layers:
            continue
        cfg = layer.get_config()
        outcome = None
        for i, node in enumerate(layer._inbound_nodes):
            if nodes is not None and "%s_ib-%d" % (layer.name, i) not in nodes:
                continue
            ins = [
                states[(src.name, ni, ti)]
                for src, ni, ti in zip(node.inbound_layers, node.node_indices, node.tensor_indices)
            ]
            c = Conversion(
                np,
                to,
                layer,
                cfg,
                ins,
                _shapes(node.input_shapes),
                _shapes(node.output_shapes),
                backend,
                graph,
                node,
            )
            out = rule_for(layer)(c)
            if outcome is not None and (outcome[0].key() != out.key()):
                c.refuse("is shared by parts of the model whose layouts differ")
            outcome = (out, c)
            for t in range(len(_shapes(node.output_shapes))):
                states[(layer.name, i, t)] = out
        if outcome is None:
            continue
        out, c = outcome
        configs[layer.name] = cfg
        if c.weights is not None:
            graph.add_weights(layer.name, c.weights)
        entry = {
            "name": layer.name,
            "class": layer.__class__.__name__,
            "changes": c.changes,
            "state": out.describe(),
            "output_shape": _plain(layer.output_shape),
        }
        graph.report[layer.name] = entry
        report.append(entry)
    output_states = [states[(src.name, ni, ti)] for src, ni, ti in model._output_coordinates]
    return configs, graph.weights, report, input_states, output_states


def _plain(shape):
    if isinstance(shape, list):
        return [_plain(s) for s in shape]
    return list(shape) if shape is not None else None


def edit_model_config(config, configs, input_states, to):
    """The whole model config with each layer's edited config, and input shapes moved."""
    config = json.loads(json.dumps(config))
    inner = config["config"]
    items = inner if isinstance(inner, list) else inner["layers"]
    for item in items:
        edited = configs.get(item["config"].get("name"))
        if edited is not None:
            item["config"] = json.loads(json.dumps(edited))
        cfg = item["config"]
        shape = cfg.get("batch_input_shape")
        if shape is not None and len(shape) in (4, 5):
            cfg["batch_input_shape"] = [shape[i] for i in permutation(len(shape), to)]
    if isinstance(inner, dict) and inner.get("build_input_shape"):
        shape = inner["build_input_shape"]
        if len(shape) in (4, 5):
            inner["build_input_shape"] = [shape[i] for i in permutation(len(shape), to)]
    return config


# -- the proof --------------------------------------------------------------------------


def random_inputs(np, model, seed):
    rng = np.random.RandomState(seed)
    xs = []
    for layer in model._input_layers:
        shape = [SAMPLES] + [16 if n is None else n for n in layer.batch_input_shape[1:]]
        dtype = str(getattr(layer, "dtype", "float32") or "float32")
        if "int" in dtype:
            xs.append(rng.randint(0, 2, size=shape).astype(dtype))
        else:
            xs.append(rng.standard_normal(shape).astype(dtype))
    return xs


def as_new(np, x, state):
    if state.kind == "image":
        return np.ascontiguousarray(x.transpose(state.perm))
    if state.kind == "flat":
        return np.ascontiguousarray(x[:, state.sigma])
    return x


def prove(np, old, new, input_states, output_states):
    xs = random_inputs(np, old, 1234)
    old_out = old.predict(xs if len(xs) > 1 else xs[0], batch_size=SAMPLES)
    new_xs = [as_new(np, x, s) for x, s in zip(xs, input_states)]
    new_out = new.predict(new_xs if len(new_xs) > 1 else new_xs[0], batch_size=SAMPLES)
    if not isinstance(old_out, list):
        old_out, new_out = [old_out], [new_out]
    worst, scale, ok = 0.0, 0.0, True
    for o, n, s in zip(old_out, new_out, output_states):
        expect = as_new(np, np.asarray(o), s)
        n = np.asarray(n)
        if expect.shape != n.shape:
            return {"ok": False, "max_abs_diff": None, "why": "output shapes differ"}
        top = float(np.max(np.abs(expect))) if expect.size else 0.0
        diff = np.abs(n.astype("float64") - expect.astype("float64"))
        bound = ATOL * max(1.0, top) + RTOL * np.abs(expect.astype("float64"))
        ok = ok and bool(np.all(diff <= bound)) and bool(np.all(np.isfinite(n)))
        worst = max(worst, float(np.max(diff)) if diff.size else 0.0)
        scale = max(scale, top)
    return {
        "ok": ok,
        "samples": SAMPLES,
        "max_abs_diff": worst,
        "max_abs_output": scale,
        "tolerance": "|new - old| <= %g * max(1, max|old|) + %g * |old| per element" % (ATOL, RTOL),
    }


# -- main -------------------------------------------------------------------------------


def run(args, out):
    import h5py
    import numpy as np

    config = read_config(args, h5py)
    import keras

    check_classes(keras, config)
    model = build(keras, config, read_weights(h5py, args.input))
    other = CHANNELS_FIRST if args.to == CHANNELS_LAST else CHANNELS_LAST
    formats = image_formats(model)
    result = {"keras_version": keras.__version__, "backend": keras.backend.backend()}
    if not formats or formats == [args.to]:
        result.update({"ok": True, "nothing_to_do": True, "formats": formats})
        return result
    if formats != [other]:
        raise Refused("its layers mix data formats (%s); convert it by hand" % ", ".join(formats))
    configs, weights, report, input_states, output_states = convert_graph(
        np, model, args.to, keras.backend.backend()
    )
    full = {"class_name": model.__class__.__name__, "config": model.get_config()}
    new_config = edit_model_config(full, configs, input_states, args.to)
    new = keras.models.model_from_json(json.dumps(new_config))
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        f = weights.get(layer.name)
        new.get_layer(layer.name).set_weights(f(ws) if f else ws)
    if args.output:
        if args.architecture:
            new.save_weights(args.output)
            with open(args.architecture_output, "w") as fh:
                fh.write(new.to_json())
        else:
            new.save(args.output, include_optimizer=False)
            copy_training_config(h5py, args.input, args.output)
        # the proof runs on what was written, read back
        new = build(keras, json.loads(new.to_json()), read_weights(h5py, args.output))
    proof = prove(np, model, new, input_states, output_states)
    result.update(
        {
            "ok": proof["ok"],
            "nothing_to_do": False,
            "formats": formats,
            "layers": report,
            "inputs": [s.describe() for s in input_states],
            "outputs": [s.describe() for s in output_states],
            "proof": proof,
        }
    )
    if not proof["ok"]:
        result["error"] = (
            "the converted model's outputs differ from the original's (max |difference| %s); "
            "nothing was written" % proof.get("max_abs_diff")
        )
    return result


def copy_training_config(h5py, src, dst):
    """The loss and optimizer settings stay (a fresh optimizer: its state is per weight)."""
    with h5py.File(src, "r") as fin:
        raw = fin.attrs.get("training_config")
    if raw is not None:
        with h5py.File(dst, "a") as fout:
            fout.attrs["training_config"] = raw


def _json_default(value):
    """numpy scalars (shapes computed with numpy) as plain numbers."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--to", required=True, choices=[CHANNELS_FIRST, CHANNELS_LAST])
    ap.add_argument("--output")
    ap.add_argument("--architecture")
    ap.add_argument("--architecture-output")
    args = ap.parse_args()
    out = sys.stdout
    sys.stdout = sys.stderr  # Keras and MXNet print; only the report goes to stdout
    try:
        result = run(args, out)
    except Refused as exc:
        result = {"ok": False, "refused": True, "error": str(exc), "layer": exc.layer}
    except ImportError as exc:
        result = {"ok": False, "import_error": True, "error": "%s: %s" % (type(exc).__name__, exc)}
    except Exception as exc:  # anything Keras raised: reported as one line
        msg = str(exc).strip().splitlines()
        result = {
            "ok": False,
            "error": "%s: %s" % (type(exc).__name__, msg[0][:300] if msg else ""),
        }
    out.write(json.dumps(result, default=_json_default) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "mxnet")
    sys.exit(main())
