"""The migrate rules on small cases written for them: each rule's before and after,
the cases it must leave alone, and the round trip back to channels_last."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmx_tune.migrate import RULES, migrate_source

# The file uses a conv layer, so numpy data is taken to be images (KMX401/402).
CONV = "from keras.layers import Conv2D\n"


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def to_first(text: str) -> str:
    result = migrate_source(text, "channels_first")
    assert result.new_source is not None
    return result.new_source.decode()


def to_last(text: str) -> str:
    result = migrate_source(text, "channels_last")
    assert result.new_source is not None
    return result.new_source.decode()


def codes(text: str, to: str = "channels_first") -> list[tuple[str, bool]]:
    return [(f.code, f.fixable) for f in migrate_source(text, to).findings]


# (id, before, after, expected codes). Each before is channels_last code; each after is
# what --write gives for channels_first, and --to channels_last must give before again.
REWRITES = [
    ("input_shape", "Conv2D(32, (3, 3), input_shape=(28, 28, 1))\n",
     "Conv2D(32, (3, 3), input_shape=(1, 28, 28))\n", ["KMX101"]),
    ("input_shape names", "Conv2D(8, 3, input_shape=(img_rows, img_cols, 3))\n",
     "Conv2D(8, 3, input_shape=(3, img_rows, img_cols))\n", ["KMX101"]),
    ("input_shape list", "Conv2D(8, 3, input_shape=[64, 64, 4])\n",
     "Conv2D(8, 3, input_shape=[4, 64, 64])\n", ["KMX101"]),
    ("input_shape 1-D conv", "Conv1D(8, 3, input_shape=(100, 1))\n",
     "Conv1D(8, 3, input_shape=(1, 100))\n", ["KMX101"]),
    ("input_shape 3-D conv", "Conv3D(8, 3, input_shape=(16, 64, 64, 3))\n",
     "Conv3D(8, 3, input_shape=(3, 16, 64, 64))\n", ["KMX101"]),
    ("input_shape ConvLSTM2D keeps time first",
     "ConvLSTM2D(40, (3, 3), input_shape=(None, 40, 40, 1))\n",
     "ConvLSTM2D(40, (3, 3), input_shape=(None, 1, 40, 40))\n", ["KMX101"]),
    ("input_shape variable",
     "input_shape = (28, 28, 1)\nmodel.add(Conv2D(8, 3, input_shape=input_shape))\n",
     "input_shape = (1, 28, 28)\nmodel.add(Conv2D(8, 3, input_shape=input_shape))\n",
     ["KMX101"]),
    ("pretrained model", "MobileNet(input_shape=(32, 32, 3), weights=None)\n",
     "MobileNet(input_shape=(3, 32, 32), weights=None)\n", ["KMX101"]),
    ("batch_input_shape", "Conv2D(8, 3, batch_input_shape=(32, 28, 28, 3))\n",
     "Conv2D(8, 3, batch_input_shape=(32, 3, 28, 28))\n", ["KMX102"]),
    ("Input shape=", "x = Input(shape=(64, 64, 3))\n", "x = Input(shape=(3, 64, 64))\n",
     ["KMX102"]),
    ("Input positional", "x = Input((64, 64, 3))\n", "x = Input((3, 64, 64))\n", ["KMX102"]),
    ("Input batch_shape", "x = Input(batch_shape=(None, 64, 64, 3))\n",
     "x = Input(batch_shape=(None, 3, 64, 64))\n", ["KMX102"]),
    ("Input shape variable", "shp = (None, None, 3)\ninp = keras.Input(shape=shp)\n",
     "shp = (3, None, None)\ninp = keras.Input(shape=shp)\n", ["KMX101"]),
    ("Reshape", "x = Reshape((28, 28, 1))(x)\n", "x = Reshape((1, 28, 28))(x)\n", ["KMX103"]),
    ("Reshape target_shape", "layers.Reshape(target_shape=(7, 7, 3))\n",
     "layers.Reshape(target_shape=(3, 7, 7))\n", ["KMX103"]),
    ("BatchNormalization", "y = BatchNormalization(axis=-1)(y)\n",
     "y = BatchNormalization(axis=1)(y)\n", ["KMX201"]),
    ("BatchNormalization spacing", "y = BatchNormalization(axis = -1, momentum=0.9)(y)\n",
     "y = BatchNormalization(axis = 1, momentum=0.9)(y)\n", ["KMX201"]),
    ("concatenate of conv outputs",
     "a = Conv2D(8, 3)(x)\nb = MaxPooling2D()(x)\nm = concatenate([a, b], axis=-1)\n",
     "a = Conv2D(8, 3)(x)\nb = MaxPooling2D()(x)\nm = concatenate([a, b], axis=1)\n",
     ["KMX202"]),
    ("Concatenate layer",
     "a = Conv2D(8, 3)(x)\nb = Activation('relu')(BatchNormalization()(Conv2D(8, 1)(x)))\n"
     "m = Concatenate(axis=-1)([a, b])\n",
     "a = Conv2D(8, 3)(x)\nb = Activation('relu')(BatchNormalization()(Conv2D(8, 1)(x)))\n"
     "m = Concatenate(axis=1)([a, b])\n",
     ["KMX202"]),
    ("K.concatenate in a function",
     "def block(x):\n    a = UpSampling2D()(x)\n    b = ZeroPadding2D()(x)\n"
     "    return K.concatenate([a, b], axis=-1)\n",
     "def block(x):\n    a = UpSampling2D()(x)\n    b = ZeroPadding2D()(x)\n"
     "    return K.concatenate([a, b], axis=1)\n",
     ["KMX202"]),
    ("data_format", "Conv3D(1, 3, padding='same', data_format='channels_last')\n",
     "Conv3D(1, 3, padding='same', data_format='channels_first')\n", ["KMX301"]),
    ("data_format double quotes", 'MaxPooling2D(data_format="channels_last")\n',
     'MaxPooling2D(data_format="channels_first")\n', ["KMX301"]),
    ("set_image_data_format", "K.set_image_data_format('channels_last')\n",
     "K.set_image_data_format('channels_first')\n", ["KMX302"]),
    ("set_image_data_format long", 'keras.backend.set_image_data_format("channels_last")\n',
     'keras.backend.set_image_data_format("channels_first")\n', ["KMX302"]),
    ("reshape method", CONV + "x_train = x_train.reshape(x_train.shape[0], 28, 28, 1)\n",
     CONV + "x_train = x_train.reshape(x_train.shape[0], 1, 28, 28)\n", ["KMX401"]),
    ("reshape tuple", CONV + "x = x.reshape((-1, 32, 32, 3))\n",
     CONV + "x = x.reshape((-1, 3, 32, 32))\n", ["KMX401"]),
    ("np.reshape list", CONV + "x = np.reshape(x, [-1, size, size, 1])\n",
     CONV + "x = np.reshape(x, [-1, 1, size, size])\n", ["KMX401"]),
    ("expand_dims", CONV + "x = np.expand_dims(x, -1)\n", CONV + "x = np.expand_dims(x, 1)\n",
     ["KMX402"]),
    ("expand_dims axis=", CONV + "x = np.expand_dims(x, axis=-1)\n",
     CONV + "x = np.expand_dims(x, axis=1)\n", ["KMX402"]),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after", "expected"), [c[1:] for c in REWRITES],
                         ids=[c[0] for c in REWRITES])  # fmt: skip
def test_rule_rewrites_to_channels_first(before: str, after: str, expected: list[str]) -> None:
    result = migrate_source(before, "channels_first")
    assert [f.code for f in result.findings] == expected
    assert all(f.fixable for f in result.findings)
    assert to_first(before) == after


@pytest.mark.parametrize(("before", "after"), [c[1:3] for c in REWRITES],
                         ids=[c[0] for c in REWRITES])  # fmt: skip
def test_rule_rewrites_back_to_the_original_text(before: str, after: str) -> None:
    assert to_last(after) == before
    # and the code already migrated has nothing left to migrate
    assert codes(after) == []


def test_every_rule_is_exercised() -> None:
    used = {code for case in REWRITES for code in case[3]}
    # report-only codes have their own tests: E999, KMX403 below; the others in
    # test_migrate_hostile.py (E901, E902) and test_migrate_data.py (KMX5xx, KMX6xx)
    reported = {"E999", "KMX403", "E901", "E902", "KMX501", "KMX502", "KMX601", "KMX602"}
    assert used | reported == {rule.code for rule in RULES}


def test_formatting_and_comments_are_kept() -> None:
    before = src("""
        model.add(Conv2D(32, (3, 3),   # first block
                         input_shape=(img_rows,  # rows
                                      img_cols, 3, ),  # RGB
                         data_format = 'channels_last'))
        """)
    after = to_first(before)
    assert after == src("""
        model.add(Conv2D(32, (3, 3),   # first block
                         input_shape=(3,  # rows
                                      img_rows, img_cols, ),  # RGB
                         data_format = 'channels_first'))
        """)
    assert to_last(after) == before


def test_batchnorm_axis_3_becomes_1_and_comes_back_as_minus_1() -> None:
    # axis=3 and axis=-1 are the same axis of a 4-D tensor; the way back writes -1
    assert to_first("BatchNormalization(axis=3)\n") == "BatchNormalization(axis=1)\n"
    assert to_last("BatchNormalization(axis=1)\n") == "BatchNormalization(axis=-1)\n"


@pytest.mark.parametrize(
    "text",
    [
        "Conv2D(8, 3, input_shape=x_train.shape[1:])\n",  # computed from data
        "Conv2D(8, 3, input_shape=(28, 28))\n",  # no channel axis
        "Reshape((7, 7, 128))\n",  # 128 is not a channel count of an input image
        "LSTM(32, input_shape=(10, 1))\n",  # a sequence, not an image
        "Dense(32, batch_input_shape=(None, 10, 1))\n",
        "Input(shape=(10, 1))\n",  # could be a sequence: only 1-D conv layers say so
        "BatchNormalization()\n",  # keras-mxnet maps the default -1 to 1 itself
        "BatchNormalization(axis=channel_axis)\n",
        "Conv2D(8, 3, data_format=None)\n",
        "Conv2D(8, 3, data_format='channels_first')\n",
        "x = np.concatenate([a, b], axis=-1)\n",
        CONV + "x = np.expand_dims(img, axis=0)\n",
        CONV + "labels = labels.reshape(-1, 1)\n",
        CONV + "w = K.reshape(w, (-1, 28, 28, 1))\n",
        "shape = (28, 28, 1)\n",  # never passed as an input shape
    ],
)
def test_code_without_channels_last_assumptions_is_left_alone(text: str) -> None:
    result = migrate_source(text, "channels_first")
    assert result.findings == ()
    assert result.new_source == text.encode()


GUARDED = src("""
    from keras import backend as K
    from keras.layers import Conv2D

    if K.image_data_format() == 'channels_first':
        x_train = x_train.reshape(x_train.shape[0], 1, img_rows, img_cols)
        input_shape = (1, img_rows, img_cols)
    else:
        x_train = x_train.reshape(x_train.shape[0], img_rows, img_cols, 1)
        input_shape = (img_rows, img_cols, 1)

    def build():
        if keras.backend.image_data_format() != 'channels_last':
            pass
        elif other:
            x = Input(shape=(28, 28, 1))
        else:
            x = Reshape((28, 28, 1))(x)
        axis = 1 if backend.image_data_format() == 'channels_first' else -1
        shape = (1, 28, 28) if K.image_data_format() == 'channels_first' else (28, 28, 1)
        return Conv2D(8, 3, input_shape=input_shape)
    """)


@pytest.mark.parametrize("to", ["channels_first", "channels_last"])
def test_code_guarded_by_image_data_format_is_left_alone(to: str) -> None:
    result = migrate_source(GUARDED, to)
    assert result.findings == ()
    assert result.new_source == GUARDED.encode()


def test_guard_does_not_leak_past_its_if() -> None:
    text = GUARDED + "model.add(Conv2D(8, 3, input_shape=(28, 28, 3)))\n"
    assert codes(text) == [("KMX101", True)]


def test_concatenate_of_unknown_tensors_is_reported_not_rewritten() -> None:
    text = "m = concatenate([u, v], axis=-1)\nn = Concatenate(axis=-1)([u, v])\n"
    result = migrate_source(text, "channels_first")
    assert [(f.code, f.fixable, f.replacement) for f in result.findings] == [
        ("KMX202", False, None),
        ("KMX202", False, None),
    ]
    assert "cannot tell the tensors are images" in result.findings[0].message
    assert result.new_source == text.encode()


def test_image_tensors_do_not_cross_function_scopes() -> None:
    text = src("""
        def a(x):
            t = Conv2D(8, 3)(x)
        def b(t, u):
            return concatenate([t, u], axis=-1)
        """)
    assert codes(text) == [("KMX202", False)]


def test_numpy_data_in_a_file_without_image_layers_is_reported_not_rewritten() -> None:
    # e.g. a hierarchical RNN reads (n, 28, 28, 1) as rows of pixels, not as images
    text = "x = x.reshape(x.shape[0], 28, 28, 1)\nx = np.expand_dims(x, -1)\n"
    result = migrate_source(text, "channels_first")
    assert [(f.code, f.fixable) for f in result.findings] == [("KMX401", False), ("KMX402", False)]
    assert "no convolution or pooling layers" in result.findings[0].message
    assert result.new_source == text.encode()


def test_arrays_built_in_an_image_layout_are_reported_only() -> None:
    text = CONV + "x = np.zeros((n, 28, 28, 1), dtype='float32')\n"
    result = migrate_source(text, "channels_first")
    assert [(f.code, f.fixable) for f in result.findings] == [("KMX403", False)]
    assert result.new_source == text.encode()


def test_ambiguous_shape_is_reported_not_rewritten() -> None:
    # (1, 28, 1): is the channel first or last? Rotating it could not be undone.
    text = "Conv2D(8, 3, input_shape=(1, 28, 1))\n"
    result = migrate_source(text, "channels_first")
    assert [(f.code, f.fixable) for f in result.findings] == [("KMX101", False)]
    assert "more than one element looks like a channel count" in result.findings[0].message
    assert result.new_source == text.encode()


def test_reverse_reshape_moves_the_channel_last() -> None:
    text = CONV + "x = x.reshape(n, 1, 28, 28)\n"
    assert to_last(text) == CONV + "x = x.reshape(n, 28, 28, 1)\n"


def test_finding_positions_and_replacement() -> None:
    text = "import keras\n\nm.add(Conv2D(8, 3,\n    input_shape=(28, 28, 1)))\n"
    (finding,) = migrate_source(text, "channels_first", path="m.py").findings
    assert (finding.path, finding.line, finding.col) == ("m.py", 4, 17)
    assert finding.replacement == "(1, 28, 28)"
    assert finding.message == "input_shape=(28, 28, 1) is channels_last -> (1, 28, 28)"


def test_unparseable_source_is_reported_and_not_rewritten() -> None:
    result = migrate_source("def broken(:\n    input_shape=(28, 28, 1)\n", path="bad.py")
    assert result.new_source is None  # never rewritten
    assert [(f.code, f.line, f.col, f.fixable) for f in result.findings] == [("E999", 1, 12, False)]
    assert result.findings[0].message == "could not parse: invalid syntax"


def test_undecodable_source_is_reported() -> None:
    result = migrate_source(b'x = "\xff\xfe"\n')
    assert result.new_source is None
    assert [f.code for f in result.findings] == ["E999"]


def test_encoding_and_line_endings_are_kept() -> None:
    text = (
        "# -*- coding: latin-1 -*-\r\n# caf\xe9\r\nConv2D(8, 3, input_shape=(28, 28, 1))\r\n"
    ).encode("latin-1")
    result = migrate_source(text, "channels_first")
    assert result.new_source == text.replace(b"(28, 28, 1)", b"(1, 28, 28)")


def test_unknown_target_format_is_a_usage_error() -> None:
    from kmx_tune.errors import UsageError

    with pytest.raises(UsageError, match="channels_first or channels_last"):
        migrate_source("x = 1\n", "channels_middle")


element = st.one_of(
    st.sampled_from(["1", "3", "4", "None", "rows", "28", "224", "-1"]),
    st.integers(0, 600).map(str),
)


@pytest.mark.fuzz
@given(st.lists(element, min_size=3, max_size=4), st.sampled_from(["Conv2D", "ConvLSTM2D"]))
def test_shape_rewrites_are_involutions(values: list[str], layer: str) -> None:
    text = f"{layer}(8, 3, input_shape=({', '.join(values)}))\n"
    forward = migrate_source(text, "channels_first")
    if forward.changed:
        assert to_last(to_first(text)) == text
    backward = migrate_source(text, "channels_last")
    if backward.changed:
        assert to_first(to_last(text)) == text
