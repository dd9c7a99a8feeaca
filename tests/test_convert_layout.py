"""The layout rules (pure) and the in-memory API built on them."""

from __future__ import annotations

import numpy as np
import pytest

from kmx_tune.convert import layout as L
from kmx_tune.convert import to_channels_first, to_channels_last
from kmx_tune.errors import KmxError
from kmx_tune.formats import CHANNELS_FIRST as CF
from kmx_tune.formats import CHANNELS_LAST as CL


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((10, 32, 32, 3), CL),
        ((10, 3, 32, 32), CF),
        ((10, 28, 28, 1), CL),
        ((10, 1, 28, 28), CF),
        ((10, 64, 64, 4), CL),
        ((10, 8, 16, 16, 3), CL),  # 5-D (N, D, H, W, C)
        ((10, 3, 8, 16, 16), CF),
        ((10, 3, 32, 3), L.AMBIGUOUS),
        ((10, 1, 1, 1), L.AMBIGUOUS),
        ((10, 64, 64, 16), L.UNKNOWN),
        ((10, 28, 28), L.NO_CHANNEL_AXIS),
        ((10,), L.NOT_IMAGE),
        ((10, 10), L.NOT_IMAGE),
        ((), L.NOT_IMAGE),
        ((1, 2, 3, 4, 5, 6), L.NOT_IMAGE),
    ],
)
def test_detect_layout(shape: tuple[int, ...], expected: str) -> None:
    assert L.detect_layout(shape) == expected


@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (2, 4, 5, 6, 3)])
def test_permutations_round_trip_and_match_numpy(shape: tuple[int, ...]) -> None:
    a = np.arange(np.prod(shape)).reshape(shape)
    cf = a.transpose(L.permutation(a.ndim, CF))
    assert cf.shape == L.transposed_shape(shape, CF) == (shape[0], shape[-1], *shape[1:-1])
    back = cf.transpose(L.permutation(a.ndim, CL))
    assert np.array_equal(back, a)


def plan(shape: tuple[int, ...], to: str = CF, **kw: object) -> L.ArrayPlan:
    return L.plan_array("x", shape, "uint8", to, **kw)  # type: ignore[arg-type]


def test_plan_transposes_channels_last() -> None:
    p = plan((10, 32, 32, 3))
    assert (p.action, p.out_shape, p.perm) == (L.TRANSPOSE, (10, 3, 32, 32), (0, 3, 1, 2))
    p5 = plan((10, 8, 32, 32, 3))
    assert (p5.action, p5.out_shape) == (L.TRANSPOSE, (10, 3, 8, 32, 32))


def test_plan_reverse_direction() -> None:
    p = plan((10, 3, 32, 32), CL)
    assert (p.action, p.out_shape) == (L.TRANSPOSE, (10, 32, 32, 3))
    assert plan((10, 3, 8, 32, 32), CL).out_shape == (10, 8, 32, 32, 3)


def test_plan_never_transposes_twice() -> None:
    p = plan((10, 3, 32, 32))
    assert p.action == L.SKIP and "already channels_first" in p.note
    # not even when named with --key
    assert plan((10, 3, 32, 32), keys={"x"}).action == L.SKIP


def test_plan_refuses_ambiguous_and_says_why() -> None:
    p = plan((10, 3, 32, 3))
    assert p.action == L.REFUSE
    assert "ambiguous" in p.note and "--key x" in p.note
    u = plan((10, 64, 64, 16))
    assert u.action == L.REFUSE and "neither" in u.note


def test_plan_key_forces_ambiguous_and_copies_the_rest() -> None:
    p = plan((10, 3, 32, 3), keys={"x"})
    assert (p.action, p.out_shape) == (L.TRANSPOSE, (10, 3, 3, 32))
    other = L.plan_array("y", (10, 32, 32, 3), "uint8", CF, keys={"x"})
    assert other.action == L.COPY and "--key" in other.note


def test_plan_grayscale_needs_the_flag() -> None:
    assert plan((10, 28, 28)).action == L.COPY
    assert "--add-channel-axis" in plan((10, 28, 28)).note
    p = plan((10, 28, 28), add_channel_axis=True)
    assert (p.action, p.out_shape) == (L.ADD_CHANNEL_AXIS, (10, 1, 28, 28))
    assert plan((10, 28, 28), CL, add_channel_axis=True).out_shape == (10, 28, 28, 1)


def test_plan_copies_labels_and_refuses_objects() -> None:
    assert plan((10,)).action == L.COPY
    assert plan((10, 1)).action == L.COPY
    obj = plan((10, 32, 32, 3), has_object=True)
    assert obj.action == L.REFUSE and "pickle" in obj.note


# -- in memory ---------------------------------------------------------------------


def test_to_channels_first_transposes_once() -> None:
    x = np.random.default_rng(0).integers(0, 255, (4, 6, 5, 3), dtype=np.uint8)
    once = to_channels_first(x)
    assert once.shape == (4, 3, 6, 5) and once.flags.c_contiguous
    assert np.array_equal(once, x.transpose(0, 3, 1, 2))
    assert to_channels_first(once) is once  # keras.utils.to_channels_first would transpose again
    assert np.array_equal(to_channels_last(once), x)


def test_to_channels_first_mnist_and_5d() -> None:
    mnist = np.zeros((7, 28, 28), np.uint8)
    assert to_channels_first(mnist).shape == (7, 1, 28, 28)
    assert to_channels_last(mnist).shape == (7, 28, 28, 1)
    vol = np.zeros((2, 8, 5, 6, 3), np.float32)
    assert to_channels_first(vol).shape == (2, 3, 8, 5, 6)


def test_to_channels_first_ambiguous_needs_assume() -> None:
    a = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    with pytest.raises(KmxError, match="assume"):
        to_channels_first(a)
    assert np.array_equal(to_channels_first(a, assume=CL), a.transpose(0, 3, 1, 2))
    assert to_channels_first(a, assume=CF) is a
    with pytest.raises(KmxError):
        to_channels_first(np.zeros((3, 4)))
    with pytest.raises(KmxError, match="add_channel_axis"):
        to_channels_first(np.zeros((3, 4, 5)), add_channel_axis=False)
