"""Checks of Keras-MXNet, keras.json, and importing keras."""

from __future__ import annotations

from collections.abc import Iterator

from kmx_tune import keras_config
from kmx_tune.doctor.model import FAIL, KERAS_MXNET, OK, WARN, Context, Finding, MachineContext
from kmx_tune.flavors import PY_NEWEST_KERAS_MXNET


def _reinstall_keras_mxnet(ctx: Context) -> str:
    """Put keras-mxnet's files back; plain keras goes first when it is installed (both
    write the module `keras`, and the next upgrade of plain keras would win again)."""
    again = ctx.pip("install", "--force-reinstall", "--no-deps", KERAS_MXNET)
    if ctx.target.dist("keras") is None:
        return again
    return ctx.pip("uninstall", "-y", "keras") + " && " + again


def check_keras(ctx: Context) -> Iterator[Finding]:
    t = ctx.target
    km, k, facts = t.dist("keras-mxnet"), t.dist("keras"), t.keras
    old_py = ctx.py <= PY_NEWEST_KERAS_MXNET
    reinstall = _reinstall_keras_mxnet(ctx)
    if facts.module_path is None:
        yield Finding(
            "keras",
            WARN,
            "Keras-MXNet is not installed",
            f"detected: no `keras` module in {ctx.python}"
            + ("" if old_py else f"; keras-mxnet needs Python 3.6-3.9: {ctx.route.detail}"),
            ctx.pip("install", KERAS_MXNET) if old_py else ctx.old_python_route(),
        )
        return
    if not facts.has_mxnet_backend:
        what = f"keras {k.version}" if k else "a keras"
        over = " installed over keras-mxnet" if km else ""
        yield Finding(
            "keras",
            FAIL,
            f"`import keras` finds {what}{over}, which has no MXNet backend",
            (
                f"detected: backend/mxnet_backend.py is left in {facts.module_path}, but "
                "backend/__init__.py is plain Keras's and never loads it"
                if facts.mxnet_backend_file
                else f"detected: no backend/mxnet_backend.py in {facts.module_path}"
            )
            + "; keras-mxnet ships as the module `keras`, so `pip install keras` replaces it "
            "(keras-apache-mxnet issue 134)",
            reinstall if old_py else ctx.old_python_route(),
        )
        return
    version = km.version if km else (k.version if k else "?")
    problems = False
    if not old_py:
        problems = True
        yield Finding(
            "keras.python",
            FAIL,
            f"keras-mxnet {version} fails to import on {ctx.py_str}",
            f"detected: {ctx.py_str} at {ctx.python}; keras/callbacks.py does "
            "`from collections import Iterable`, removed in Python 3.10; keras-mxnet needs "
            f"Python 3.9 or older: {ctx.route.detail}",
            ctx.old_python_route(),
        )
    if km and k:
        problems = True
        yield Finding(
            "keras",
            WARN,
            f"both keras {k.version} and keras-mxnet {km.version} are installed",
            f"detected: both in {ctx.python}; they share the module `keras` and the next "
            "`pip install -U keras` replaces the MXNet backend (keras-apache-mxnet issue 134)",
            reinstall,
        )
    if not problems:
        yield Finding(
            "keras",
            OK,
            f"keras-mxnet {version} with the MXNet backend on {ctx.py_str}",
            f"detected: backend/mxnet_backend.py in {facts.module_path}",
        )


def check_keras_json(ctx: MachineContext) -> Iterator[Finding]:
    state = ctx.keras_json
    loc = state.location
    where = f"Keras reads {loc.path} ({loc.source})"
    if loc.notes:
        where += "; " + "; ".join(loc.notes)
    set_format = "kmx-tune set-format channels_first"
    if not state.exists:
        yield Finding(
            "keras.json",
            WARN,
            "no keras.json yet: Keras-MXNet writes one with channels_last on first import",
            where,
            set_format,
        )
    elif state.error:
        # set-format --force replaces bad content, but what is not a file is moved aside
        yield Finding("keras.json", FAIL, state.error, where, keras_config.repair_command(state))
        return
    else:
        yield Finding("keras.json", OK, f"keras.json found at {loc.path}", where)

    file_backend = state.values.get("backend")
    override = state.backend_override
    if override is not None and override != "mxnet":
        yield Finding(
            "keras.backend",
            FAIL,
            f"KERAS_BACKEND={override} overrides keras.json's backend",
            f"from the environment: KERAS_BACKEND={override}; keras.json says "
            f"{file_backend or 'nothing (default mxnet)'}",
            "unset KERAS_BACKEND",
        )
    elif file_backend is not None and file_backend != "mxnet":
        if override == "mxnet":
            yield Finding(
                "keras.backend",
                WARN,
                f"keras.json's backend is {file_backend}; only KERAS_BACKEND=mxnet makes it mxnet",
                f"from the environment: KERAS_BACKEND=mxnet; keras.json at {loc.path}: "
                f"backend {file_backend}",
                set_format,
            )
        else:
            yield Finding(
                "keras.backend",
                FAIL,
                f"keras.json's backend is {file_backend}, not mxnet",
                f"from keras.json at {loc.path}",
                set_format,
            )
    else:
        value, source = state.effective["backend"]
        yield Finding("keras.backend", OK, f"backend is {value}", f"from {source}")

    if not state.exists:
        return  # the missing-file warning above already says what Keras will write
    value, source = state.effective["image_data_format"]
    if value != "channels_first":
        yield Finding(
            "keras.image_data_format",
            WARN,
            f"image_data_format is {value}: Keras-MXNet transposes around every convolution",
            f"from {source} ({loc.path}); MXNet runs convolutions in NCHW (channels_first), "
            'and Keras-MXNet warns "MXNet Backend performs best with `channels_first` format"',
            set_format,
        )
    else:
        yield Finding(
            "keras.image_data_format",
            OK,
            "image_data_format is channels_first",
            f"from {source} ({loc.path})",
        )


def check_keras_runtime(ctx: Context) -> Iterator[Finding]:
    rt = ctx.target.runtime
    if rt is None or ctx.target.keras.module_path is None:
        return
    if rt.keras_import_error:
        yield Finding(
            "keras.import",
            FAIL,
            "import keras fails",
            f"detected (--deep, KERAS_BACKEND=mxnet): {rt.keras_import_error}",
            ctx.old_python_route()
            if ctx.py > PY_NEWEST_KERAS_MXNET
            else _reinstall_keras_mxnet(ctx),
        )
    else:
        yield Finding(
            "keras.import",
            OK,
            f"import keras works ({rt.keras_version})",
            "detected (--deep, KERAS_BACKEND=mxnet)",
        )
