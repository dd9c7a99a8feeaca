"""The rules about what the code takes from outside itself: data files it loads
(KMX501, KMX502: inspected with :mod:`.data`) and the backend it sets in the
environment (KMX602). All are reported, never rewritten: the fix is a command
(``kmx-tune convert``) or a decision, not an edit kmx-tune could make."""

from __future__ import annotations

import json
import shlex

import libcst as cst

from kmx_tune.migrate import data
from kmx_tune.migrate.knowledge import NUMPY
from kmx_tune.migrate.nodes import code_of, find_arg, last_name, positional_arg, receiver_name
from kmx_tune.migrate.site import Site

# -- data loaded from files: KMX501, KMX502 --------------------------------------------------


def _literal(node: cst.BaseExpression | None) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def _data_load(
    site: Site, call: cst.Call, path: cst.BaseExpression, code: str, key: str | None
) -> None:
    """Report a load of image data saved in the layout migrated from. The file named by
    a literal is looked up beside the script and in the current folder and inspected
    (headers only); what cannot be inspected is reported in image code only."""
    name = _literal(path)
    found = data.find(name, site.folder) if name is not None else None
    arrays = data.arrays_in(found, site.source_format, key) if found is not None else None
    what = code_of(call)
    convert = "kmx-tune convert" + ("" if site.to_first else f" --to {site.target}")
    if found is not None and arrays is not None:
        if not arrays:
            return  # nothing in it is in the old layout (converted already, or not images)
        shown = shlex.quote(data.shown(found))
        listed = ", ".join(f"{n} {shape}" for n, shape in arrays)
        assert name is not None
        site.report(
            call,
            code,
            f"{what} loads {site.source_format} image data ({listed}) -> {convert} {shown}, then "
            f"load {data.converted_name(name, site.target)!r} (or {convert} --in-place {shown})",
            None,
            f"the data is converted on disk by {convert}",
        )
        return
    if name is not None and found is None and data.names_layout(name, site.target):
        return  # 'x.channels_first.npz': converted already, by its name
    if not site.prescan.has_image_layers:
        return
    if name is None:
        why, shown = "kmx-tune cannot tell which file it loads", "FILE"
        load = f"FILE's .{site.target} output"
    else:
        shown = shlex.quote(data.shown(found) if found is not None else name)
        load = repr(data.converted_name(name, site.target))
        why = (
            f"cannot read the layout of {shown}"
            if found is not None
            else f"cannot find {name} beside the file or in the current folder"
        )
    site.report(
        call,
        code,
        f"{what} may load {site.source_format} image data -> check it with kmx-tune convert "
        f"--dry-run {shown}; if it does: {convert} {shown} and load {load} (or {convert} "
        f"--in-place {shown})",
        None,
        f"{why}; once checked, mark the line # noqa: {code}",
    )


def np_load(site: Site, original: cst.Call, updated: cst.Call) -> None:
    """KMX501: ``np.load('data.npz')`` of image data saved in the old layout."""
    if receiver_name(original.func) not in NUMPY:
        return
    arg = find_arg(original, "file", 0)
    if arg is not None:
        _data_load(site, original, arg.value, "KMX501", None)


def hdf5_matrix(site: Site, original: cst.Call, updated: cst.Call) -> None:
    """KMX502: ``HDF5Matrix('data.h5', 'x_train')`` reads a dataset as it is stored."""
    path = find_arg(original, "datapath", 0)
    dataset = find_arg(original, "dataset", 1)
    if path is not None:
        key = _literal(dataset.value) if dataset is not None else None
        _data_load(site, original, path.value, "KMX502", key)


def h5py_file(site: Site, original: cst.Call, updated: cst.Call) -> None:
    """KMX502: ``h5py.File('data.h5')``."""
    if receiver_name(original.func) != "h5py":
        return
    path = find_arg(original, "name", 0)
    if path is not None:
        _data_load(site, original, path.value, "KMX502", None)


# -- the backend set in the code: KMX602 ------------------------------------------------------


def _environ(node: cst.BaseExpression) -> bool:
    """``os.environ`` or ``environ``."""
    return last_name(node) == "environ" and (
        isinstance(node, cst.Name) or receiver_name(node) == "os"
    )


def _backend_set(site: Site, node: cst.CSTNode, value: cst.BaseExpression) -> None:
    backend = _literal(value)
    if backend is None or backend == "mxnet":
        return
    site.report(
        node,
        "KMX602",
        f"{code_of(node)} makes Keras use {json.dumps(backend)}, not MXNet, whatever "
        "keras.json says",
        None,
        "set it to 'mxnet', or remove it",
    )


def environ_call(site: Site, original: cst.Call, updated: cst.Call) -> None:
    """KMX602: ``os.environ.setdefault('KERAS_BACKEND', 'tensorflow')``, ``os.putenv``."""
    func = original.func
    if not isinstance(func, cst.Attribute):
        return
    if not (_environ(func.value) or (last_name(func) == "putenv" and receiver_name(func) == "os")):
        return
    key, value = positional_arg(original, 0), positional_arg(original, 1)
    if key is not None and value is not None and _literal(key.value) == "KERAS_BACKEND":
        _backend_set(site, original, value.value)


def environ_assign(site: Site, original: cst.Assign) -> None:
    """KMX602: ``os.environ['KERAS_BACKEND'] = 'tensorflow'``."""
    for target in original.targets:
        sub = target.target
        if (
            isinstance(sub, cst.Subscript)
            and _environ(sub.value)
            and len(sub.slice) == 1
            and isinstance(sub.slice[0].slice, cst.Index)
            and _literal(sub.slice[0].slice.value) == "KERAS_BACKEND"
        ):
            _backend_set(site, original, original.value)
