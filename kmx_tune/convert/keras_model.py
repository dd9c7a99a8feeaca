"""Converting a saved Keras model (``model.save()``) or weights file (``save_weights()``
plus the architecture from ``model.to_json()``) between channels_last and
channels_first.

The work runs inside the target interpreter with its own Keras
(``kmx_tune/_in_target/kmx_keras_model.py``, via :class:`kmx_tune.target.Target`):
kmx-tune's own Python may be newer than keras-mxnet can run on. The target writes
the new model into a temporary file beside the output (made here, through
:mod:`kmx_tune.fsio`), proves it (the file read back gives the old model's outputs on
random inputs) and reports; kmx-tune then syncs the file, checks it is a Keras file and
publishes it. A refusal, a failed proof or a crash leaves nothing under the final name.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kmx_tune.convert import layout as L
from kmx_tune.convert.common import (
    NOTHING_TO_DO,
    PLANNED,
    FileOutcome,
    Options,
    Progress,
    converted,
    prepare_output,
    publish,
)
from kmx_tune.convert.writer import open_temp
from kmx_tune.errors import KmxError, TargetError, UsageError

SCRIPT = "kmx_keras_model.py"
TIMEOUT = 900  # seconds: importing mxnet and keras, loading, two predictions


def architecture_output(final: Path) -> Path:
    """Where the converted architecture of a weights file goes: beside its weights."""
    return final.with_suffix(".json")


def convert_model(
    src: Path, final: Path, opts: Options, progress: Progress | None, *, weights_only: bool
) -> FileOutcome:
    t0 = time.perf_counter()
    if opts.keys and opts.require_keys:
        raise UsageError(f"--key: {src} is a Keras model; --key names arrays in data files")
    arch = Path(opts.architecture) if opts.architecture else None
    if weights_only and arch is None:
        raise UsageError(
            f"{src}: a Keras weights file (save_weights) holds no architecture; pass "
            "--architecture MODEL.json (what model.to_json() wrote)"
        )
    if arch is not None and not arch.is_file():
        raise UsageError(f"--architecture {arch}: no such file")
    formats = _data_formats(src, arch)
    if not formats or formats == {opts.to}:
        why = f"already {opts.to}" if formats else "no layer has a data_format"
        return FileOutcome(
            str(src),
            NOTHING_TO_DO,
            message=f"{why}: nothing to convert",
            bytes_in=src.stat().st_size,
        )
    from kmx_tune.target import Target

    target = Target.find(opts.python)
    args = ["--input", str(src), "--to", opts.to]
    if weights_only and arch is not None:
        args += ["--architecture", str(arch)]
    size = src.stat().st_size
    if opts.dry_run:
        report = _run(target, src, args)
        return _outcome(src, final, report, PLANNED, size)
    removed = prepare_output(src, final, opts, 2 * size + (1 << 20))
    json_final = architecture_output(final) if weights_only else None
    if json_final is not None and json_final.exists() and not opts.force:
        raise KmxError(f"{json_final} exists; pass --force to overwrite it")
    with open_temp(final) as tmp:
        if json_final is None:
            report = _run(target, src, [*args, "--output", str(tmp.path)])
        else:
            with open_temp(json_final) as jtmp:
                report = _run(
                    target,
                    src,
                    [*args, "--output", str(tmp.path), "--architecture-output", str(jtmp.path)],
                )
                if report.get("nothing_to_do"):
                    jtmp.path.unlink()
                else:
                    os.fsync(jtmp.fd)
                    publish(jtmp.path, src, json_final, dataclasses.replace(opts, in_place=False))
        if report.get("nothing_to_do"):
            tmp.path.unlink()
            return _outcome(src, final, report, NOTHING_TO_DO, size)
        os.fsync(tmp.fd)
        written = os.fstat(tmp.fd).st_size
        _check_written(tmp.path, weights_only, str(final))
        publish(tmp.path, src, final, opts)
    planned = _outcome(src, final, report, PLANNED, size)
    return converted(planned, written, t0, opts, removed)


def _data_formats(src: Path, arch: Path | None) -> set[str]:
    """The data_format values of the model's layers (Flatten aside): read here, without
    Keras, so a model already in the target layout needs no target at all."""
    import json

    try:
        if arch is not None:
            config = json.loads(arch.read_text(encoding="utf-8"))
        else:
            from kmx_tune.convert.h5io import model_config

            config = json.loads(model_config(src))
    except (OSError, ValueError) as exc:
        raise KmxError(f"{src}: cannot read the model's architecture: {exc}") from None
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "Flatten":
                return  # its data_format is the order it flattens in, not a layout
            for key, value in node.items():
                if key == "data_format" and isinstance(value, str):
                    found.add(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return found


def _run(target: Any, src: Path, args: Sequence[str]) -> dict[str, Any]:
    """The in-target script's report; a refusal or failure as one KmxError line."""
    env = dict(os.environ)
    env.setdefault("KERAS_BACKEND", "mxnet")
    # Keras writes keras.json on first import: not into the user's home on our account
    import tempfile

    with tempfile.TemporaryDirectory(prefix="kmx-keras-home-") as home:
        env["KERAS_HOME"] = home
        report = target.run_json(SCRIPT, args, env=env, timeout=TIMEOUT)
    if report.get("ok"):
        return report
    error = str(report.get("error") or "the conversion failed")
    if report.get("import_error"):
        raise TargetError(
            f"{src}: Keras does not import in {target.python} ({error}); run the conversion "
            "with the Python that trained the model: --python ~/venvs/keras/bin/python"
        )
    if report.get("refused"):
        raise KmxError(f"{src}: refused, nothing written: {error}")
    if report.get("proof"):
        raise KmxError(f"{src}: {error}")
    raise KmxError(f"{src}: Keras in {target.python} could not convert it: {error}")


def _check_written(path: Path, weights_only: bool, where: str) -> None:
    from kmx_tune.convert.h5io import MODEL, WEIGHTS, sniff

    if sniff(path) != (WEIGHTS if weights_only else MODEL):
        raise KmxError(f"{where}: the written file is not a Keras file; nothing was replaced")


def _outcome(src: Path, final: Path, report: dict[str, Any], status: str, size: int) -> FileOutcome:
    layers = tuple(_layer_plan(entry) for entry in report.get("layers", []))
    if status == NOTHING_TO_DO:
        formats = report.get("formats") or []
        why = f"already {formats[0]}" if formats else "no layer has a data_format"
        return FileOutcome(str(src), status, message=f"{why}: nothing to convert", bytes_in=size)
    return FileOutcome(
        str(src), status, layers, str(final), bytes_in=size, message=_proof_line(report)
    )


def _layer_plan(entry: dict[str, Any]) -> L.ArrayPlan:
    shape = entry.get("output_shape") or []
    if shape and isinstance(shape[0], list):  # several outputs: the first
        shape = shape[0]
    per_sample = tuple(int(n) if n is not None else -1 for n in shape[1:])
    changes = entry.get("changes") or []
    state = str(entry.get("state", ""))
    perm = None
    if state.startswith("image, axes "):
        perm = tuple(int(a) for a in state[len("image, axes (") : -1].split(",") if a.strip())
    out = tuple(per_sample[a - 1] for a in perm[1:]) if perm else per_sample
    layout = "image" if perm else state
    return L.ArrayPlan(
        name=str(entry.get("name", "")),
        shape=per_sample,
        dtype=str(entry.get("class", "")),
        layout=layout,
        action="edit" if changes else "keep",
        out_shape=out,
        note="; ".join(str(c) for c in changes) or "unchanged",
    )


def _proof_line(report: dict[str, Any]) -> str:
    proof = report.get("proof") or {}
    line = (
        f"proof: on {proof.get('samples')} random inputs the converted model, read back from "
        f"the file, gives the original's outputs (max |difference| "
        f"{proof.get('max_abs_diff', 0):.2g}; tolerance {proof.get('tolerance')}); "
        f"Keras {report.get('keras_version')} ({report.get('backend')})"
    )
    return line + "; optimizer state not kept (loss and optimizer settings are)"


__all__ = ["architecture_output", "convert_model"]
