"""The keras.json in effect against the layout the code is migrated to (KMX601).

Code migrated to channels_first builds channels_first layers only when Keras runs with
image_data_format channels_first: layers without an explicit data_format take it from
keras.json (or from the code's own ``K.set_image_data_format``), and a mismatch fails
far from its cause (MXNet: "kernel size exceed input"). So when any checked file is
image code, the keras.json that Keras would read here is checked too, and a
disagreement is a finding with the command that fixes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from kmx_tune.formats import CHANNELS_LAST
from kmx_tune.migrate.model import CodeFinding, FileReport

if TYPE_CHECKING:
    from kmx_tune.keras_config import KerasJsonState


def check_keras_json(
    state: KerasJsonState, files: Sequence[FileReport], to: str
) -> tuple[CodeFinding, ...]:
    """KMX601 findings for *state* (the keras.json in effect) when *files* hold image
    code migrated to *to*; () when they agree or no file is image code."""
    from kmx_tune.keras_config import repair_command

    if not any(fr.image_code for fr in files):
        return ()
    code_sets_format = any(fr.sets_format == to for fr in files)
    loc = state.location
    path = str(loc.path)
    fix = f"kmx-tune set-format {to}"

    def finding(message: str) -> CodeFinding:
        return CodeFinding(path, 1, 1, "KMX601", message, None, False)

    found: list[CodeFinding] = []
    if not state.exists:
        if to != CHANNELS_LAST and not code_sets_format:
            found.append(
                finding(
                    f"no keras.json yet ({loc.source}): Keras-MXNet writes one with "
                    f"channels_last on first import; the {to} code needs {to} -> {fix}"
                )
            )
    elif state.error:
        found.append(
            finding(
                f"the keras.json in effect ({loc.source}) is one Keras cannot use: "
                f"{state.error} -> {repair_command(state, to)}"
            )
        )
    else:
        fmt = state.values.get("image_data_format", "channels_last")
        backend = state.values.get("backend", "mxnet")
        wrong = []
        if fmt != to and not code_sets_format:
            wrong.append(f"image_data_format {json.dumps(fmt)}")
        if backend != "mxnet":
            wrong.append(f"backend {json.dumps(backend)}")
        if wrong:
            needs = to if backend == "mxnet" else f"{to} on MXNet"
            found.append(
                finding(
                    f"keras.json in effect says {' and '.join(wrong)} ({loc.source}); "
                    f"the {to} code needs {needs} -> {fix}"
                )
            )
    override = state.backend_override
    if override and override != "mxnet":
        found.append(
            finding(
                f"KERAS_BACKEND={override} in this environment overrides keras.json's backend: "
                "Keras will not use MXNet -> unset KERAS_BACKEND"
            )
        )
    return tuple(found)
