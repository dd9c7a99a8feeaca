"""The rules: one function per kind of finding, and the tables that say which calls
each one looks at.

A rule gets the call as it was written (``original``, whose positions and arguments it
reads) and as rewritten so far by the rules before it (``updated``, which it edits),
reports what it finds through the :class:`Site`, and returns the rewritten call, or
None to leave it as it is. A new case is one function and one entry in
:data:`CALL_RULES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from kmx_tune.migrate.indexing import new_axis
from kmx_tune.migrate.knowledge import (
    BACKEND,
    ENVIRON_SETTERS,
    LAYOUT_FREE,
    NOT_KERAS,
    NP_CREATORS,
    NUMPY,
    TIME_FIRST,
)
from kmx_tune.migrate.loads import environ_call, h5py_file, hdf5_matrix, np_load
from kmx_tune.migrate.nodes import (
    Items,
    code_of,
    find_arg,
    int_node,
    int_value,
    items_of,
    keyword_arg,
    last_name,
    positional_arg,
    receiver_name,
    replace_arg,
    root_name,
    with_values,
)
from kmx_tune.migrate.shapes import (
    AMBIGUOUS,
    IMAGE_LENGTHS,
    IMAGE_OR_1D_LENGTHS,
    rotate,
    shape_edit,
)
from kmx_tune.migrate.site import CallRule, Site, SubscriptRule, data_reason

# -- axes: KMX201, KMX202, KMX402 ----------------------------------------------------------


def _axis_edit(
    site: Site,
    original: cst.Call,
    updated: cst.Call,
    index: int | None,
    code: str,
    what: str,
    reason: str | None,
) -> cst.Call | None:
    """Axis -1 (or 3) <-> 1. ``reason`` not None: report without rewriting."""
    arg = find_arg(original, "axis", index)
    if arg is None:
        return None
    value = int_value(arg.value)
    if site.to_first and value in (-1, 3):
        new_value = 1
    elif not site.to_first and value == 1:
        new_value = -1
    else:
        return None
    new_node = int_node(new_value)
    label = f"{what} axis={code_of(arg.value)}"
    if reason is not None:
        site.report(
            arg.value, code, f"{label} is the {site.source_format} channel axis", None, reason
        )
        return None
    site.report(
        arg.value,
        code,
        f"{label} is the {site.source_format} channel axis -> axis={new_value}",
        new_node,
    )
    return replace_arg(updated, arg, original, new_node)


def batchnorm(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX201: ``BatchNormalization(axis=-1)``."""
    return _axis_edit(site, original, updated, 0, "KMX201", "BatchNormalization", None)


def _concat(
    site: Site,
    original: cst.Call,
    updated: cst.Call,
    index: int,
    inputs: cst.BaseExpression | None,
) -> cst.Call | None:
    """KMX202, rewritten only when every input is known to be an image tensor."""
    elements = items_of(inputs) if inputs is not None else None
    images = bool(elements) and all(site.is_image(e.value) for e in elements or [])
    reason = None if images else "cannot tell the tensors are images"
    what = code_of(original.func)
    return _axis_edit(site, original, updated, index, "KMX202", what, reason)


def concatenate_layer(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX202: a ``Concatenate(axis=-1)`` layer whose inputs are not in sight."""
    if site.is_applied(original):
        return None  # Concatenate(axis=-1)([a, b]): see applied_concatenate
    return _concat(site, original, updated, 0, None)


def applied_concatenate(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX202: a layer applied to its inputs, ``Concatenate(axis=-1)([a, b])``."""
    assert isinstance(original.func, cst.Call) and isinstance(updated.func, cst.Call)
    inputs = original.args[0].value if original.args else None
    new_layer = _concat(site, original.func, updated.func, 0, inputs)
    return None if new_layer is None else updated.with_changes(func=new_layer)


def concatenate_function(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX202: ``concatenate([a, b], axis=-1)`` and ``K.concatenate``, not numpy's."""
    if root_name(original.func) in NOT_KERAS:
        return None
    first = positional_arg(original, 0)
    return _concat(site, original, updated, 1, first.value if first is not None else None)


def expand_dims(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX402: ``np.expand_dims(x, -1)`` on image data."""
    if receiver_name(original.func) not in NUMPY:
        return None
    return _axis_edit(
        site, original, updated, 1, "KMX402", code_of(original.func), data_reason(site)
    )


# -- data_format: KMX301, KMX302 -----------------------------------------------------------


def _format_string(site: Site, node: cst.BaseExpression) -> cst.SimpleString | None:
    if not isinstance(node, cst.SimpleString) or node.evaluated_value != site.source_format:
        return None
    # the literal's own quotes and prefix are kept: only the word changes
    return node.with_changes(value=node.value.replace(site.source_format, site.target))


def set_format(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX302: ``K.set_image_data_format('channels_last')``."""
    arg = find_arg(original, "data_format", 0)
    if arg is None:
        return None
    new = _format_string(site, arg.value)
    if new is None:
        return None
    site.report(
        arg.value,
        "KMX302",
        f"{code_of(original.func)}({code_of(arg.value)}) -> {code_of(new)}",
        new,
    )
    return replace_arg(updated, arg, original, new)


def data_format_arg(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX301: ``data_format='channels_last'`` on any call but set_image_data_format."""
    arg = keyword_arg(original, "data_format")
    if arg is None or last_name(original.func) == "set_image_data_format":
        return None
    new = _format_string(site, arg.value)
    if new is None:
        return None
    site.report(arg.value, "KMX301", f"data_format={code_of(arg.value)} -> {code_of(new)}", new)
    return replace_arg(updated, arg, original, new)


# -- shapes: KMX101, KMX102, KMX103 --------------------------------------------------------


@dataclass(frozen=True)
class _ShapeArg:
    """An argument that holds a shape, and what a finding in it is called."""

    keyword: str
    position: int | None  # where it may also be passed without its keyword
    code: str
    label: str  # what the message calls it
    lead: int  # leading axes that stay where they are: batch, time
    lengths: frozenset[int] = IMAGE_LENGTHS  # spatial + channel lengths that are images


# The shape arguments of particular calls, by name; any layer's input_shape= and
# batch_input_shape= are in _shape_args.
_SHAPE_ARGS: dict[str, tuple[_ShapeArg, ...]] = {
    "Input": (
        _ShapeArg("shape", 0, "KMX102", "Input shape ", 0),
        _ShapeArg("batch_shape", None, "KMX102", "Input batch_shape ", 1),
    ),
    "Reshape": (_ShapeArg("target_shape", 0, "KMX103", "Reshape target ", 0),),
}


def _shape_args(name: str | None) -> tuple[_ShapeArg, ...]:
    """The shape arguments that a call to *name* may carry."""
    layer: tuple[_ShapeArg, ...] = ()
    if name not in LAYOUT_FREE:
        time = 1 if name in TIME_FIRST else 0
        one_d = name is not None and name.endswith("1D")
        lengths = IMAGE_OR_1D_LENGTHS if one_d else IMAGE_LENGTHS
        layer = (
            _ShapeArg("input_shape", None, "KMX101", "input_shape=", time, lengths),
            _ShapeArg("batch_input_shape", None, "KMX102", "batch_input_shape=", 1 + time, lengths),
        )
    return layer + _SHAPE_ARGS.get(name or "", ())


def _shape_finding(
    site: Site, node: cst.BaseExpression, code: str, label: str, new: cst.BaseExpression | None
) -> None:
    old = code_of(node)
    if new is None:
        site.report(
            node, code, f"{label}{old} may be a {site.source_format} shape", None, AMBIGUOUS
        )
    else:
        site.report(node, code, f"{label}{old} is {site.source_format} -> {code_of(new)}", new)


def shape_args(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX101/102/103: shape literals passed to layers, Input and Reshape."""
    current = updated
    for spec in _shape_args(last_name(original.func)):
        arg = find_arg(original, spec.keyword, spec.position)
        if arg is None:
            continue
        edit = shape_edit(arg.value, spec.lead, spec.lengths, site.to_first)
        if not edit.triggered:
            continue
        _shape_finding(site, arg.value, spec.code, spec.label, edit.new_node)
        if edit.new_node is not None:
            current = replace_arg(current, arg, original, edit.new_node)
    return current if current is not updated else None


def assigned_shape(
    site: Site, name: str, original: cst.Assign, updated: cst.Assign
) -> cst.Assign | None:
    """KMX101: ``input_shape = (28, 28, 1)`` where the name is later passed as a shape."""
    if name not in site.prescan.shape_names:
        return None
    edit = shape_edit(original.value, 0, IMAGE_LENGTHS, site.to_first)
    if not edit.triggered:
        return None
    _shape_finding(site, original.value, "KMX101", f"{name} = ", edit.new_node)
    return None if edit.new_node is None else updated.with_changes(value=edit.new_node)


# -- numpy data: KMX401, KMX403 ------------------------------------------------------------


def np_create(site: Site, original: cst.Call, updated: cst.Call) -> None:
    """KMX403: ``np.zeros((n, 28, 28, 1))``. Never rewritten: such arrays are often
    filled from data in the old layout, so the fix belongs to a human."""
    if receiver_name(original.func) not in NUMPY or not site.prescan.has_image_layers:
        return
    arg = find_arg(original, "shape", 0)
    elements = items_of(arg.value) if arg is not None else None
    if arg is None or elements is None or len(elements) - 1 not in IMAGE_LENGTHS:
        return
    triggered, _ = rotate([e.value for e in elements[1:]], site.to_first)
    if triggered:
        site.report(
            arg.value,
            "KMX403",
            f"{code_of(original.func)}({code_of(arg.value)}) builds {site.source_format} data",
            None,
            f"make the array in the {site.target} layout by hand",
        )


def _reshape_shape(original: cst.Call) -> tuple[Items, cst.Arg | None] | None:
    """The new shape a numpy-style reshape is given: the elements of its one tuple or
    list argument and that argument, or its positional arguments and None. None when
    the call is not such a reshape (Keras backend, tf, torch, keywords, ``*args``)."""
    receiver = receiver_name(original.func)
    if receiver in BACKEND or (receiver in NOT_KERAS and receiver not in NUMPY):
        return None
    if any(a.keyword is not None or a.star != "" for a in original.args):
        return None
    positional = list(original.args)
    if receiver in NUMPY:
        positional = positional[1:]  # np.reshape(x, shape)
    if len(positional) != 1:
        return positional, None
    elements = items_of(positional[0].value)
    return None if elements is None else (elements, positional[0])


def reshape(site: Site, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """KMX401: ``x.reshape(n, 28, 28, 1)``, ``x.reshape((n, 28, 28, 1))`` and
    ``np.reshape(x, [-1, 28, 28, 1])``: a batch of images with a trailing channel."""
    found = _reshape_shape(original)
    if found is None:
        return None
    items, shape_arg = found
    values = [item.value for item in items]
    if len(values) - 1 not in IMAGE_LENGTHS:
        return None
    triggered, rotated = rotate(values[1:], site.to_first)
    if not triggered:
        return None
    span: cst.CSTNode = shape_arg.value if shape_arg is not None else original
    message = f"{code_of(span)} gives {site.source_format} image data"
    reason = data_reason(site)
    if rotated is None or reason is not None:
        site.report(span, "KMX401", message, None, reason or AMBIGUOUS)
        return None
    new_values = [values[0], *rotated]
    if shape_arg is not None:
        container = shape_arg.value
        assert isinstance(container, (cst.Tuple, cst.List))
        new_container = container.with_changes(elements=with_values(items, new_values))
        site.report(span, "KMX401", f"{message} -> {code_of(new_container)}", new_container)
        return replace_arg(updated, shape_arg, original, new_container)
    start = len(original.args) - len(items)
    new_args = [*updated.args[:start], *with_values(updated.args[start:], new_values)]
    new_call = updated.with_changes(args=new_args)
    site.report(span, "KMX401", f"{message} -> {code_of(new_call)}", new_call)
    return new_call


# -- the tables ----------------------------------------------------------------------------

# Calls by the name called (the last name of ``a.b.name(...)``).
CALL_RULES: dict[str, CallRule] = {
    "Concatenate": concatenate_layer,  # KMX202
    "concatenate": concatenate_function,  # KMX202
    "BatchNormalization": batchnorm,  # KMX201
    "set_image_data_format": set_format,  # KMX302
    "expand_dims": expand_dims,  # KMX402
    "reshape": reshape,  # KMX401
    **dict.fromkeys(NP_CREATORS, np_create),  # KMX403
    "load": np_load,  # KMX501
    "HDF5Matrix": hdf5_matrix,  # KMX502
    "File": h5py_file,  # KMX502
    **dict.fromkeys(ENVIRON_SETTERS, environ_call),  # KMX602
}
# Layers applied on the spot, ``Layer(...)(inputs)``, by the layer's name: these rules
# see the inputs. Such a call gets no other rule.
APPLIED_RULES: dict[str, CallRule] = {
    "Concatenate": applied_concatenate,  # KMX202
}
# Subscripts: every ``x[...]`` is offered to these.
SUBSCRIPT_RULES: tuple[SubscriptRule, ...] = (
    new_axis,  # KMX402
)
# Arguments that any call may carry, checked after the call's own rule.
EVERY_CALL: tuple[CallRule, ...] = (
    shape_args,  # KMX101, KMX102, KMX103
    data_format_arg,  # KMX301
)
