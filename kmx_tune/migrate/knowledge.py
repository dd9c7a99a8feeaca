"""What kmx-tune knows about Keras and numpy names, as data: which layers make or keep
an image tensor, which receivers are not Keras, which calls ask for the layout."""

from __future__ import annotations

import re

# Layers whose output is an image tensor (channels on the data_format axis).
IMAGE_LAYER = re.compile(
    r"^(Conv[123]D|Conv[23]DTranspose|Deconv(olution)?[23]D|Convolution[123]D"
    r"|SeparableConv(olution)?[12]D|DepthwiseConv2D|MaxPool(ing)?[123]D"
    r"|AveragePool(ing)?[123]D|AvgPool[123]D|UpSampling[123]D|ZeroPadding[123]D"
    r"|Cropping[123]D|ConvLSTM2D|LocallyConnected[12]D)$"
)
# Pretrained image models: a file that uses them is image code.
IMAGE_MODEL = re.compile(
    r"^(VGG\d+|ResNet\d+\w*|InceptionV3|InceptionResNetV2|Xception|MobileNet\w*"
    r"|DenseNet\d+|NASNet\w+)$"
)
# Layers that keep the layout of their input: an image in, an image out.
PRESERVING = frozenset(
    {
        "BatchNormalization",
        "Activation",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "SpatialDropout3D",
        "LeakyReLU",
        "PReLU",
        "ELU",
        "ReLU",
        "ThresholdedReLU",
        "Softmax",
        "GaussianNoise",
        "GaussianDropout",
        "AlphaDropout",
    }
)
# Merge layers (class and functional spellings): an image when all inputs are.
MERGE = frozenset(
    {
        "Add", "add", "Subtract", "subtract", "Multiply", "multiply", "Average", "average",
        "Maximum", "maximum", "Minimum", "minimum", "Concatenate", "concatenate",
    }
)  # fmt: skip
# Layers for which an input_shape= says nothing about image layout.
LAYOUT_FREE = frozenset(
    {
        "Dense", "Embedding", "LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU", "RNN",
        "Bidirectional", "Masking", "LSTMCell", "GRUCell", "SimpleRNNCell",
    }
)  # fmt: skip
# Layers whose input has a time axis before the image: (T, H, W, C) -> (T, C, H, W).
TIME_FIRST = frozenset({"ConvLSTM2D", "TimeDistributed"})
# Receivers whose .concatenate / .reshape / .expand_dims are not Keras calls or numpy data.
NOT_KERAS = frozenset({"np", "numpy", "onp", "jnp", "tf", "torch", "scipy", "mx", "nd"})
NUMPY = frozenset({"np", "numpy"})
BACKEND = frozenset({"K", "backend"})
NP_CREATORS = frozenset({"zeros", "ones", "empty", "full"})
# Calls whose result says which layout is in effect: code under such an `if` is left alone.
GUARD_CALLS = frozenset({"image_data_format", "image_dim_ordering"})
# Calls that set an environment variable: ``os.environ.setdefault``, ``os.putenv``.
ENVIRON_SETTERS = frozenset({"setdefault", "putenv"})
# keras.datasets loaders whose images come in the layout keras.json says
# (keras/datasets/cifar10.py of keras-mxnet 2.2.4.3 transposes only for channels_last);
# mnist and fashion_mnist give (N, 28, 28), whose channel axis the code adds itself.
KERAS_IMAGE_DATASETS = frozenset({"cifar10", "cifar100"})
