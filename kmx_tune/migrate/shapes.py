"""Shapes: the one place that decides how a shape tuple is rotated between
``(..., C)`` and ``(C, ...)``, and when it cannot be rotated without doubt."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from kmx_tune.migrate.nodes import items_of, with_values

CHANNEL_COUNTS = frozenset({"1", "3", "4"})
IMAGE_LENGTHS = frozenset({3, 4})  # (H, W, C) and (D, H, W, C)
IMAGE_OR_1D_LENGTHS = frozenset({2, 3, 4})  # plus (steps, C) for 1-D layers
AMBIGUOUS = "more than one element looks like a channel count (1, 3 or 4)"


def is_channel(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer) and node.value in CHANNEL_COUNTS


def rotate(
    values: list[cst.BaseExpression], to_first: bool
) -> tuple[bool, list[cst.BaseExpression] | None]:
    """(triggered, new values or None when ambiguous) for the spatial+channel part.

    To channels_first, ``(..., C)`` becomes ``(C, ...)``; back, ``(C, ...)`` becomes
    ``(..., C)``. Each is done only when the other can undo it: the element that ends
    up last (or first) must not itself look like a channel count."""
    if to_first:
        if not is_channel(values[-1]):
            return False, None
        if is_channel(values[0]) or is_channel(values[-2]):
            return True, None
        return True, [values[-1], *values[:-1]]
    # back: a second channel-like number right after the first, as in (3, 3, 384),
    # is read as a channels_last shape and not reported; (3, 28, 3) is ambiguous
    if not is_channel(values[0]) or is_channel(values[1]):
        return False, None
    if is_channel(values[-1]):
        return True, None
    return True, [*values[1:], values[0]]


@dataclass(frozen=True)
class ShapeEdit:
    triggered: bool
    new_node: cst.BaseExpression | None


def shape_edit(
    node: cst.BaseExpression, lead: int, lengths: frozenset[int], to_first: bool
) -> ShapeEdit:
    """Rotate the literal tuple/list ``node``, keeping its first ``lead`` elements
    (batch and time axes) in place. Non-literal shapes are left alone."""
    elements = items_of(node)
    if elements is None:
        return ShapeEdit(False, None)
    values = [e.value for e in elements]
    spatial = values[lead:]
    if len(spatial) not in lengths:
        return ShapeEdit(False, None)
    triggered, rotated = rotate(spatial, to_first)
    if not triggered or rotated is None:
        return ShapeEdit(triggered, None)
    assert isinstance(node, (cst.Tuple, cst.List))
    new_elements = with_values(elements, [*values[:lead], *rotated])
    return ShapeEdit(True, node.with_changes(elements=new_elements))
