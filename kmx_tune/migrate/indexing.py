"""KMX402 by indexing: ``x[..., np.newaxis]`` and ``x[:, :, :, None]`` add a channel
axis at the end, as ``np.expand_dims(x, -1)`` does; for channels_first it goes after the
batch axis instead."""

from __future__ import annotations

import libcst as cst

from kmx_tune.migrate.knowledge import NUMPY
from kmx_tune.migrate.nodes import code_of, receiver_name
from kmx_tune.migrate.site import Site, data_reason

# -- channel axes added by indexing: KMX402 -------------------------------------------------


def _is_new_axis(element: cst.SubscriptElement) -> bool:
    index = element.slice
    if not isinstance(index, cst.Index) or index.star is not None:
        return False
    value = index.value
    if isinstance(value, cst.Name):
        return value.value == "None"
    return (
        isinstance(value, cst.Attribute)
        and value.attr.value == "newaxis"
        and receiver_name(value) in NUMPY
    )


def _is_full_slice(element: cst.SubscriptElement) -> bool:
    part = element.slice
    return (
        isinstance(part, cst.Slice)
        and part.lower is None
        and part.upper is None
        and part.step is None
        and not isinstance(part.second_colon, cst.Colon)
    )


def _is_ellipsis(element: cst.SubscriptElement) -> bool:
    return isinstance(element.slice, cst.Index) and isinstance(element.slice.value, cst.Ellipsis)


def _full_slice(like: cst.SubscriptElement) -> cst.SubscriptElement:
    return cst.SubscriptElement(cst.Slice(lower=None, upper=None), comma=like.comma)


def _moved_axis(site: Site, items: list[cst.SubscriptElement]) -> list[cst.SubscriptElement] | None:
    """The subscript that puts the new axis where ``site.target`` wants it, or None
    when *items* is not one of the forms, in the layout migrated from:

    - ``x[..., NA]`` <-> ``x[:, NA, ...]`` (the commas of the first form are reused, so
      the way back gives the original text)
    - ``x[:, :, :, NA]`` <-> ``x[:, NA, :, :]`` (and with one more ``:`` for volumes)
    """
    n = len(items)
    if site.to_first:
        if n == 2 and _is_ellipsis(items[0]) and _is_new_axis(items[1]):
            ellipsis, axis = items
            return [
                _full_slice(ellipsis),
                axis.with_changes(comma=ellipsis.comma),
                ellipsis.with_changes(comma=axis.comma),
            ]
        if n in (4, 5) and all(map(_is_full_slice, items[:-1])) and _is_new_axis(items[-1]):
            values = [items[0].slice, items[-1].slice, *(i.slice for i in items[1:-1])]
            return [item.with_changes(slice=value) for item, value in zip(items, values)]
        return None
    if n == 3 and _is_full_slice(items[0]) and _is_new_axis(items[1]) and _is_ellipsis(items[2]):
        first, axis, ellipsis = items
        return [ellipsis.with_changes(comma=first.comma), axis.with_changes(comma=ellipsis.comma)]
    rest = items[2:]
    if (
        n in (4, 5)
        and _is_full_slice(items[0])
        and _is_new_axis(items[1])
        and all(map(_is_full_slice, rest))
    ):
        values = [items[0].slice, *(i.slice for i in rest), items[1].slice]
        return [item.with_changes(slice=value) for item, value in zip(items, values)]
    return None


def new_axis(site: Site, original: cst.Subscript, updated: cst.Subscript) -> cst.Subscript | None:
    """KMX402: ``x[..., np.newaxis]`` and ``x[:, :, :, None]``, which add a channel axis
    at the end, as ``np.expand_dims(x, -1)`` does."""
    moved = _moved_axis(site, list(original.slice))
    if moved is None:
        return None
    new = updated.with_changes(slice=moved)
    message = f"{code_of(original)} adds a {site.source_format} channel axis"
    reason = data_reason(site)
    if reason is not None:
        site.report(original, "KMX402", message, None, reason)
        return None
    site.report(original, "KMX402", f"{message} -> {code_of(new)}", new)
    return new
