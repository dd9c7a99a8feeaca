"""Run INSIDE a Python 3.8 venv with keras-mxnet 2.2.4.3 (tests/test_convert_model.py):
builds, trains for a few steps and saves real Keras models, or checks converted ones.

    python keras_models.py build OUTDIR
    python keras_models.py check OLD.h5 NEW.h5 FORMAT     # prints a JSON report
    python keras_models.py weights A.h5 B.h5              # per-layer weights equal?

Python 3.6+ syntax; the model files are read with h5py directly because Keras 2.2's
own loader fails under h5py 3.
"""

import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "mxnet")
REPORT = sys.stdout  # the JSON report; Keras's own prints go to stderr


def emit(obj):
    REPORT.write(json.dumps(obj) + "\n")
    REPORT.flush()


import h5py  # noqa: E402
import numpy as np  # noqa: E402


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def read_weights(path):
    with h5py.File(path, "r") as f:
        g = f.get("model_weights", f)
        out = {}
        for name in g.attrs["layer_names"]:
            name = _text(name)
            out[name] = [g[name][_text(w)][()] for w in g[name].attrs["weight_names"]]
        return out


def load(path, architecture=None):
    import keras

    if architecture:
        with open(architecture) as fh:
            config = fh.read()
    else:
        with h5py.File(path, "r") as f:
            config = _text(f.attrs["model_config"])
    model = keras.models.model_from_json(config)
    for name, ws in read_weights(path).items():
        if ws:
            model.get_layer(name).set_weights(ws)
    return model


def train(model, x, y):
    model.compile("adam", "categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)


def build(out):
    import keras
    from keras import layers as kl
    from keras.models import Model, Sequential

    rng = np.random.RandomState(0)
    x = rng.rand(48, 16, 16, 3).astype("float32")
    y = keras.utils.to_categorical(rng.randint(0, 5, 48), 5)
    cl = "channels_last"

    seq = Sequential(
        [
            kl.Conv2D(8, 3, padding="same", input_shape=(16, 16, 3), data_format=cl),
            kl.BatchNormalization(axis=-1),
            kl.Activation("relu"),
            kl.MaxPooling2D(data_format=cl),
            kl.Conv2D(8, 3, data_format=cl),
            kl.Flatten(data_format=cl),
            kl.Dense(16, activation="relu"),
            kl.Dropout(0.2),
            kl.Dense(5, activation="softmax"),
        ]
    )
    train(seq, x, y)
    seq.save(os.path.join(out, "sequential.h5"))

    inp = kl.Input((16, 16, 3))
    a = kl.Conv2D(6, 3, padding="same", data_format=cl)(inp)
    a = kl.BatchNormalization(axis=3)(a)
    b = kl.Conv2D(4, 1, data_format=cl)(inp)
    c = kl.Concatenate(axis=-1)([a, b])
    c = kl.AveragePooling2D(data_format=cl)(c)
    f = kl.Flatten(data_format=cl)(c)
    o = kl.Dense(5, activation="softmax")(f)
    fn = Model(inp, o)
    train(fn, x, y)
    fn.save(os.path.join(out, "functional.h5"))
    fn.save_weights(os.path.join(out, "functional_weights.h5"))
    with open(os.path.join(out, "functional.json"), "w") as fh:
        fh.write(fn.to_json())

    # more layer kinds: separable, depthwise and transposed convolutions, padding,
    # up-sampling, a residual Add, Reshape to features, global pooling, two outputs
    inp = kl.Input((16, 16, 3))
    h = kl.ZeroPadding2D(1, data_format=cl)(inp)
    h = kl.SeparableConv2D(8, 3, data_format=cl)(h)
    h = kl.BatchNormalization()(h)
    d = kl.DepthwiseConv2D(3, padding="same", data_format=cl)(h)
    h = kl.Add()([h, d])
    t = kl.Conv2DTranspose(4, 2, strides=2, data_format=cl)(h)
    t = kl.MaxPooling2D(4, data_format=cl)(t)
    t = kl.Reshape((8 * 8 * 4,))(t)
    g = kl.GlobalAveragePooling2D(data_format=cl)(h)
    u = kl.UpSampling2D(data_format=cl)(kl.Cropping2D(4, data_format=cl)(h))
    o1 = kl.Dense(5, activation="softmax", name="cls")(kl.Concatenate()([g, t]))
    o2 = kl.Conv2D(2, 1, data_format=cl, name="seg")(kl.Add()([h, u]))
    wide = Model(inp, [o1, o2])
    wide.compile("sgd", ["categorical_crossentropy", "mse"])
    wide.fit(x, [y, rng.rand(48, 16, 16, 2).astype("float32")], epochs=2, verbose=0)
    wide.save(os.path.join(out, "wide.h5"))

    # a generator: features made into an image (Dense -> BN -> LeakyReLU -> Reshape)
    z = kl.Input((10,))
    h = kl.Dense(4 * 4 * 8)(z)
    h = kl.BatchNormalization()(h)
    h = kl.LeakyReLU(0.2)(h)
    h = kl.Reshape((4, 4, 8))(h)
    h = kl.Conv2DTranspose(4, 2, strides=2, data_format=cl)(h)
    img = kl.Conv2D(3, 3, padding="same", data_format=cl)(h)
    gen = Model(z, img)
    gen.compile("adam", "mse")
    gen.fit(rng.rand(48, 10).astype("float32"), rng.rand(48, 8, 8, 3), epochs=2, verbose=0)
    gen.save(os.path.join(out, "generator.h5"))

    # Permute of an image, and a softmax over the channels
    inp = kl.Input((16, 16, 3))
    h = kl.Conv2D(4, 3, padding="same", data_format=cl)(inp)
    h = kl.Permute((2, 1, 3))(h)
    h = kl.Conv2D(5, 1, data_format=cl)(h)
    seg = kl.Softmax(axis=-1)(h)
    per = Model(inp, seg)
    per.compile("adam", "categorical_crossentropy")
    per.fit(x, keras.utils.to_categorical(rng.randint(0, 5, (48, 16, 16)), 5), epochs=2, verbose=0)
    per.save(os.path.join(out, "permute.h5"))

    lam = Sequential(
        [
            kl.Conv2D(4, 3, input_shape=(16, 16, 3), data_format=cl),
            kl.Lambda(lambda t: t * 2, name="double_it"),
            kl.Flatten(),
            kl.Dense(5),
        ]
    )
    lam.save(os.path.join(out, "lambda.h5"))

    class Scale(kl.Layer):
        def call(self, t):
            return t * 3

    cus = Sequential([kl.Conv2D(4, 3, input_shape=(16, 16, 3), data_format=cl)])
    cus.add(Scale(name="my_scale"))
    cus.save(os.path.join(out, "custom.h5"))
    emit({"ok": True})


def check(old_path, new_path, fmt, architecture=None, new_architecture=None):
    """Independent of kmx-tune: the new model on transposed inputs gives the old one's
    outputs, and its config says what it should."""
    old = load(old_path, architecture)
    new = load(new_path, new_architecture)
    rng = np.random.RandomState(99)
    x = rng.standard_normal((5,) + tuple(old.input_shape[1:])).astype("float32")
    perm = (0, 3, 1, 2) if fmt == "channels_first" else (0, 2, 3, 1)
    old_out = old.predict(x)
    new_out = new.predict(np.ascontiguousarray(x.transpose(perm)) if x.ndim == 4 else x)
    if not isinstance(old_out, list):
        old_out, new_out = [old_out], [new_out]
    diffs = []
    for o, n in zip(old_out, new_out):
        if o.ndim == 4:
            o = o.transpose(perm)
        diffs.append(float(np.max(np.abs(o - n))))
    config = json.loads(new.to_json())["config"]
    layers = config["layers"] if isinstance(config, dict) else config
    formats = sorted(set(ly["config"].get("data_format") for ly in layers) - {None})
    axes = {
        ly["config"]["name"]: ly["config"].get("axis")
        for ly in layers
        if ly["class_name"] in ("BatchNormalization", "Concatenate")
    }
    emit(
        {
            "max_diff": max(diffs),
            "formats": formats,
            "axes": axes,
            "input_shape": list(new.input_shape[1:]),
        }
    )


def same_weights(a, b):
    wa, wb = read_weights(a), read_weights(b)
    same = sorted(wa) == sorted(wb) and all(
        len(wa[k]) == len(wb[k]) and all(np.array_equal(p, q) for p, q in zip(wa[k], wb[k]))
        for k in wa
    )
    emit({"same": bool(same)})


if __name__ == "__main__":
    sys.stdout = sys.stderr
    cmd = sys.argv[1]
    if cmd == "build":
        build(sys.argv[2])
    elif cmd == "check":
        check(*sys.argv[2:])
    else:
        same_weights(sys.argv[2], sys.argv[3])
