"""Layout rules for image batches: pure functions of a shape, no I/O.

A batch is ``(N, H, W, C)`` or ``(N, D, H, W, C)`` in channels_last and
``(N, C, H, W)`` or ``(N, C, D, H, W)`` in channels_first. An axis "looks like
channels" when its size is 1 (grayscale), 3 (RGB) or 4 (RGBA). The layout is
channels_last when the last axis looks like channels and axis 1 does not, and the
other way round; when both or neither do, nobody can tell, and the array is
converted only when the user names it (``--key``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kmx_tune.formats import CHANNELS_FIRST, CHANNELS_LAST, other

# detected layouts besides the two formats
AMBIGUOUS = "ambiguous"  # axis 1 and the last axis both look like channels
UNKNOWN = "unknown"  # neither does
NO_CHANNEL_AXIS = "no_channel_axis"  # a 3-D (N, H, W) grayscale batch
NOT_IMAGE = "not_image"  # labels and anything else that is not 3-D to 5-D

# what happens to an array
TRANSPOSE = "transpose"
ADD_CHANNEL_AXIS = "add_channel_axis"
SKIP = "skip"  # already in the target layout: kept as it is
COPY = "copy"  # not an image batch (or not named by --key): copied unchanged
REFUSE = "refuse"

CHANNEL_SIZES = (1, 3, 4)


def detect_layout(shape: tuple[int, ...]) -> str:
    """The layout of an array of this shape, by the rule in the module docstring."""
    if len(shape) == 3:
        return NO_CHANNEL_AXIS
    if len(shape) not in (4, 5):
        return NOT_IMAGE
    last = shape[-1] in CHANNEL_SIZES
    first = shape[1] in CHANNEL_SIZES
    if last and not first:
        return CHANNELS_LAST
    if first and not last:
        return CHANNELS_FIRST
    return AMBIGUOUS if first else UNKNOWN


def permutation(ndim: int, to: str) -> tuple[int, ...]:
    """Axes for ``numpy.transpose`` that take a 4-D or 5-D batch to ``to``."""
    if to == CHANNELS_FIRST:
        return (0, ndim - 1, *range(1, ndim - 1))
    return (0, *range(2, ndim), 1)


def transposed_shape(shape: tuple[int, ...], to: str) -> tuple[int, ...]:
    return tuple(shape[axis] for axis in permutation(len(shape), to))


def with_channel_axis(shape: tuple[int, ...], to: str) -> tuple[int, ...]:
    """``(N, H, W)`` -> ``(N, 1, H, W)`` (channels_first) or ``(N, H, W, 1)``."""
    if to == CHANNELS_FIRST:
        return (shape[0], 1, *shape[1:])
    return (*shape, 1)


@dataclass(frozen=True)
class ArrayPlan:
    """What happens to one array, and why."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    layout: str
    action: str
    out_shape: tuple[int, ...]
    note: str = ""
    # numpy.transpose axes from the input to the output; None unless action is TRANSPOSE
    perm: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "layout": self.layout,
            "action": self.action,
            "out_shape": list(self.out_shape),
            "note": self.note,
        }


def _fmt(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def plan_array(
    name: str,
    shape: tuple[int, ...],
    dtype: str,
    to: str,
    *,
    keys: Collection[str] = (),
    add_channel_axis: bool = False,
    has_object: bool = False,
) -> ArrayPlan:
    """Decide what happens to one array. Pure: the same inputs give the same plan.

    ``keys`` are the names given with ``--key``. When there are any, only those
    arrays are converted, and they are converted even when their shape is
    ambiguous (read as the layout opposite to ``to``); all others are copied.
    An array already in the target layout is never transposed again, named or not.
    """
    layout = detect_layout(shape)

    def make(
        action: str,
        note: str,
        out: tuple[int, ...] | None = None,
        perm: tuple[int, ...] | None = None,
    ) -> ArrayPlan:
        return ArrayPlan(name, shape, dtype, layout, action, out or shape, note, perm)

    if has_object:
        return make(
            REFUSE,
            "object array: reading it would need pickle, which kmx-tune never uses; "
            "save it with a numeric dtype",
        )
    named = name in keys
    if keys and not named:
        return make(COPY, "not named by --key: copied unchanged")
    if layout == NOT_IMAGE:
        return make(COPY, f"{len(shape)}-D, not an image batch: copied unchanged")
    if layout == NO_CHANNEL_AXIS:
        if add_channel_axis:
            out = with_channel_axis(shape, to)
            return make(ADD_CHANNEL_AXIS, f"-> {_fmt(out)}", out)
        return make(
            COPY,
            "3-D (N, H, W) has no channel axis: copied unchanged; "
            "pass --add-channel-axis to give it one",
        )
    if layout == to:
        return make(SKIP, f"already {to}: left as it is (never transposed twice)")
    perm = permutation(len(shape), to)
    out = transposed_shape(shape, to)
    if layout == other(to):
        return make(TRANSPOSE, f"-> {_fmt(out)}", out, perm=perm)
    if named:
        note = f"-> {_fmt(out)}; {layout} shape named by --key, read as {other(to)}"
        return make(TRANSPOSE, note, out, perm=perm)
    if layout == AMBIGUOUS:
        why = (
            f"ambiguous: axis 1 ({shape[1]}) and the last axis ({shape[-1]}) both look like "
            "channels"
        )
    else:
        why = f"neither axis 1 ({shape[1]}) nor the last axis ({shape[-1]}) is 1, 3 or 4"
    return make(REFUSE, f"{why}; name it with --key {name} to convert it as {other(to)}")
