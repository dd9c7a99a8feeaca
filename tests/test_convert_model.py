"""`kmx-tune convert MODEL.h5`: real Keras models, built and trained for a few steps with
keras-mxnet 2.2.4.3 + mxnet 1.9.1 + numpy 1.23.5 in a Python 3.8 venv, converted by
that venv's Keras (--python), checked there independently of kmx-tune.

The fast tests at the end need no Keras: the refusals kmx-tune makes before anything
runs in a target, and a target without Keras."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import pytest

from tests.cli import kmx, kmx_json
from tests.fs_helpers import sha
from tests.venvs import make_venv, pyenv_python

KERAS_REQUIREMENTS = ["keras-mxnet==2.2.4.3", "mxnet==1.9.1", "numpy==1.23.5"]
MODELS_SCRIPT = Path(__file__).parent / "keras_models.py"


@pytest.fixture(scope="session")
def keras_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.8 venv with keras-mxnet; shared by the session, never changed."""
    base = pyenv_python("3.8")
    return make_venv(tmp_path_factory.mktemp("keras-venv") / "venv", KERAS_REQUIREMENTS, base)


@pytest.fixture(scope="session")
def built_models(keras_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models, trained and saved once; tests copy what they convert."""
    out = tmp_path_factory.mktemp("keras-models")
    in_venv(keras_python, "build", str(out))
    return out


def in_venv(python: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(python), str(MODELS_SCRIPT), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def models(built_models: Path, tmp_path: Path) -> Path:
    work = tmp_path / "models"
    shutil.copytree(built_models, work)
    return work


INPUT_SHAPES = {"generator": [10]}  # the others: 16x16 RGB images
WITH_FLATTEN = {"sequential", "functional"}


@pytest.mark.venv
@pytest.mark.parametrize("name", ["sequential", "functional", "wide", "generator", "permute"])
def test_converts_and_proves(models: Path, keras_python: Path, name: str) -> None:
    src = models / f"{name}.h5"
    before = sha(src)
    code, data = kmx_json("convert", str(src), "--python", str(keras_python))
    assert code == 0, data
    (entry,) = data["files"]
    assert entry["status"] == "converted"
    assert "max |difference|" in entry["message"] and "tolerance" in entry["message"]
    assert sha(src) == before
    out = models / f"{name}.channels_first.h5"
    check = in_venv(keras_python, "check", str(src), str(out), "channels_first")
    assert check["max_diff"] < 1e-4
    # every layer channels_first; a Flatten keeps channels_last: "flatten as laid out"
    flatten = ["channels_last"] if name in WITH_FLATTEN else []
    assert check["formats"] == ["channels_first", *flatten]
    assert check["input_shape"] == INPUT_SHAPES.get(name, [3, 16, 16])
    changes = {a["name"]: a["note"] for a in entry["arrays"]}
    if name in WITH_FLATTEN:
        assert any("kernel rows reordered" in note for note in changes.values())
    if name == "generator":
        assert any("kernel columns reordered" in note for note in changes.values())
    if name == "functional":
        assert check["axes"] == {"batch_normalization_2": 1, "concatenate_1": 1}
    with h5py.File(out) as f, h5py.File(src) as g:
        assert f.attrs["training_config"] == g.attrs["training_config"]


@pytest.mark.venv
def test_round_trip_gives_the_same_weights(models: Path, keras_python: Path) -> None:
    src = models / "functional.h5"
    assert kmx("convert", str(src), "--python", str(keras_python)).exit_code == 0
    first = models / "functional.channels_first.h5"
    r = kmx("convert", str(first), "--to", "channels_last", "--python", str(keras_python))
    assert r.exit_code == 0, r.output
    back = models / "functional.channels_last.h5"
    assert in_venv(keras_python, "weights", str(src), str(back)) == {"same": True}
    check = in_venv(keras_python, "check", str(first), str(back), "channels_last")
    assert check["max_diff"] < 1e-4 and check["input_shape"] == [16, 16, 3]
    again = kmx("convert", str(first), "--python", str(keras_python))
    assert again.exit_code == 0 and "nothing to convert" in again.stdout


@pytest.mark.venv
def test_weights_file_with_its_architecture(models: Path, keras_python: Path) -> None:
    src = models / "functional_weights.h5"
    r = kmx("convert", str(src), "--python", str(keras_python))
    assert r.exit_code == 2 and "--architecture" in r.stderr
    r = kmx(
        "convert",
        str(src),
        "--python",
        str(keras_python),
        "--architecture",
        str(models / "functional.json"),
    )
    assert r.exit_code == 0, r.output
    weights = models / "functional_weights.channels_first.h5"
    arch = models / "functional_weights.channels_first.json"
    check = in_venv(
        keras_python,
        "check",
        str(src),
        str(weights),
        "channels_first",
        str(models / "functional.json"),
        str(arch),
    )
    assert check["max_diff"] < 1e-4 and check["input_shape"] == [3, 16, 16]


@pytest.mark.venv
@pytest.mark.parametrize(
    ("name", "layer", "why"),
    [("lambda", "double_it", "Lambda"), ("custom", "my_scale", "custom layer (Scale)")],
)
def test_unprovable_models_are_refused_by_layer(
    models: Path, keras_python: Path, name: str, layer: str, why: str
) -> None:
    src = models / f"{name}.h5"
    r = kmx("convert", str(src), "--python", str(keras_python))
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert f"layer '{layer}'" in r.stderr and why in r.stderr
    assert sorted(p.name for p in models.iterdir() if p.name.startswith(name)) == [f"{name}.h5"]


@pytest.mark.venv
def test_dry_run_proves_and_writes_nothing(models: Path, keras_python: Path) -> None:
    src = models / "sequential.h5"
    r = kmx("convert", str(src), "--python", str(keras_python), "--dry-run")
    assert r.exit_code == 0, r.output
    assert "dry run: nothing written" in r.stdout and "proof:" in r.stdout
    assert "batch_normalization_1" in r.stdout and "axis -1 -> 1" in r.stdout
    assert not (models / "sequential.channels_first.h5").exists()


# -- fast: no Keras needed -----------------------------------------------------------


def fake_model_file(path: Path, *, weights_only: bool = False) -> None:
    with h5py.File(path, "w") as f:
        if weights_only:
            f.attrs["layer_names"] = [b"dense_1"]
        else:
            conv = {"class_name": "Conv2D", "config": {"data_format": "channels_last"}}
            f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": [conv]})


def test_target_without_keras_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "m.h5"
    fake_model_file(src)
    r = kmx("convert", str(src), "--python", sys.executable)  # kmx-tune's own: no Keras
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Keras does not import in" in r.stderr
    assert "--python" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "m.h5"]


def test_weights_file_needs_its_architecture(tmp_path: Path) -> None:
    src = tmp_path / "w.h5"
    fake_model_file(src, weights_only=True)
    r = kmx("convert", str(src))
    assert r.exit_code == 2 and "--architecture MODEL.json" in r.stderr
    r = kmx("convert", str(src), "--architecture", str(tmp_path / "missing.json"))
    assert r.exit_code == 2 and "no such file" in r.stderr


def test_key_does_not_apply_to_models(tmp_path: Path) -> None:
    src = tmp_path / "m.h5"
    fake_model_file(src)
    r = kmx("convert", str(src), "--key", "x")
    assert r.exit_code == 2 and "is a Keras model" in r.stderr


@pytest.mark.venv
@pytest.mark.kill
def test_kill_9_while_the_target_writes(models: Path, keras_python: Path) -> None:
    """kmx-tune killed while the target is writing the converted model: nothing under
    the final name, the source untouched; the next run removes the leftover and
    converts."""
    import os
    import signal
    import sys
    import time

    from kmx_tune.convert import convert_file
    from kmx_tune.fsio import TEMP_MARK

    src = models / "functional.h5"
    before = sha(src)
    final = models / "functional.channels_first.h5"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmx_tune", "convert", str(src), "--python", str(keras_python)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f".{final.name}{TEMP_MARK}{proc.pid}-"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        mine = [p for p in models.iterdir() if p.name.startswith(prefix)]
        if mine and mine[0].stat().st_size > 0:  # the target has started writing it
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not final.exists() and sha(src) == before
    time.sleep(5)  # the orphaned target finishes (or not): either way nothing is published
    assert not final.exists()
    out = convert_file(src, python=str(keras_python))
    assert out.status == "converted" and out.removed_temps
    assert not [p for p in models.iterdir() if TEMP_MARK in p.name]
    assert in_venv(keras_python, "check", str(src), str(final), "channels_first")["max_diff"] < 1e-4
