"""The in-memory counterpart of ``kmx-tune convert``.

``keras.utils.to_channels_first`` (Keras-MXNet) transposes whatever it is given:
called twice it transposes twice, and it raises on MNIST-style ``(N, H, W)``
batches. These functions detect the layout first, by the same rules as the
command, and never transpose an array that is already in the target layout.
"""

from __future__ import annotations

import numpy as np

from kmx_tune.convert import layout as L
from kmx_tune.errors import KmxError
from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST, FORMATS, other


def _convert(array: np.ndarray, to: str, assume: str | None, add_channel_axis: bool) -> np.ndarray:
    array = np.asarray(array)
    shape = tuple(int(n) for n in array.shape)
    if assume is not None and assume not in FORMATS:
        raise KmxError(f"assume must be one of {', '.join(FORMATS)}, not {assume!r}")
    if array.ndim == 3:
        if not add_channel_axis:
            raise KmxError(
                f"a 3-D array {shape} has no channel axis; pass add_channel_axis=True for (N, H, W)"
            )
        return array.reshape(L.with_channel_axis(shape, to))
    if array.ndim not in (4, 5):
        raise KmxError(f"expected a 3-D, 4-D or 5-D image batch, got shape {shape}")
    layout = assume or L.detect_layout(shape)
    if layout == to:
        return array
    if layout != other(to):
        raise KmxError(
            f"cannot tell the layout of shape {shape} ({layout}); pass assume='channels_last' "
            "or assume='channels_first'"
        )
    return np.ascontiguousarray(array.transpose(L.permutation(array.ndim, to)))


def to_channels_first(
    array: np.ndarray, *, assume: str | None = None, add_channel_axis: bool = True
) -> np.ndarray:
    """Return ``array`` in channels_first layout: ``(N, C, H, W)`` or ``(N, C, D, H, W)``.

    - A channels_last batch is transposed into a new C-contiguous array.
    - A batch already in channels_first is returned as it is (never transposed twice).
    - A 3-D grayscale batch ``(N, H, W)`` becomes ``(N, 1, H, W)`` (a view, no copy).
    - A shape whose layout cannot be told, such as ``(N, 3, 32, 3)``, raises
      :class:`kmx_tune.errors.KmxError` unless ``assume`` says what it is.
    """
    return _convert(array, CHANNELS_FIRST, assume, add_channel_axis)


def to_channels_last(
    array: np.ndarray, *, assume: str | None = None, add_channel_axis: bool = True
) -> np.ndarray:
    """The reverse of :func:`to_channels_first`: ``(N, H, W, C)`` or ``(N, D, H, W, C)``."""
    return _convert(array, CHANNELS_LAST, assume, add_channel_axis)
