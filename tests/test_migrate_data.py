"""Issue 15, items 3-5: what migrate checks beyond the model code itself.

- Loads of image data saved channels_last (``np.load``, ``HDF5Matrix``, ``h5py.File``):
  the file named in the code is inspected (headers only, with kmx-tune convert's dry
  run) and reported with the command that converts it (KMX501, KMX502).
- The keras.json in effect, and code that sets KERAS_BACKEND, against the layout the
  code is migrated to (KMX601, KMX602).
- Channel axes added by indexing: ``x[..., np.newaxis]``, ``x[:, :, :, None]`` (KMX402).

Data files are real .npy/.npz files written by numpy; keras.json files are real files
in a real KERAS_HOME; the converted file comes from a real ``kmx-tune convert``.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from kmx_tune import keras_config
from kmx_tune.migrate import migrate_paths, migrate_source
from tests.cli import kmx

CONV = "from keras.layers import Conv2D\n"


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def codes(text: str, to: str = "channels_first", path: str = "<string>") -> list[str]:
    return [f.code for f in migrate_source(text, to, path).findings]


def keras_home(tmp_path: Path, fmt: str | None, backend: str = "mxnet") -> dict[str, str]:
    kh = tmp_path / "kh"
    kh.mkdir(exist_ok=True)
    if fmt is not None:
        (kh / "keras.json").write_text(
            json.dumps({"backend": backend, "image_data_format": fmt}, indent=4)
        )
    return {"KERAS_HOME": str(kh)}


@pytest.fixture
def cifar_like(tmp_path: Path) -> Path:
    """A project: train.py beside data.npz holding channels_last images and labels."""
    project = tmp_path / "project"
    project.mkdir()
    np.savez(
        project / "data.npz",
        x_train=np.zeros((8, 32, 32, 3), np.uint8),
        y_train=np.zeros((8, 1), np.int64),
    )
    (project / "train.py").write_text(
        CONV + "import numpy as np\nd = np.load('data.npz')\nx = d['x_train']\n"
    )
    return project


# ---------------------------------------------------------------- item 3: data loads


def test_a_load_of_channels_last_data_is_reported_with_the_convert_command(
    cifar_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cifar_like)  # the commands name the data file from here
    result = kmx("migrate", "--write", "train.py", env=keras_home(tmp_path, "channels_first"))
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "train.py:3:5: KMX501 np.load('data.npz') loads channels_last image data "
        "(x_train (8, 32, 32, 3)) -> kmx-tune convert data.npz, then load "
        "'data.channels_first.npz' (or kmx-tune convert --in-place data.npz) "
        "[not rewritten: the data is converted on disk by kmx-tune convert]"
    ]
    assert "0 left to fix by hand" not in result.stderr
    assert "1 left to fix by hand" in result.stderr


def test_after_convert_in_place_the_load_is_no_longer_reported(
    cifar_like: Path, tmp_path: Path
) -> None:
    env = keras_home(tmp_path, "channels_first")
    converted = kmx("convert", "--in-place", str(cifar_like / "data.npz"))
    assert converted.exit_code == 0, converted.stderr
    result = kmx("migrate", str(cifar_like / "train.py"), env=env)
    assert (result.exit_code, result.stdout) == (0, "")


def test_loading_the_converted_name_is_not_reported(cifar_like: Path, tmp_path: Path) -> None:
    script = cifar_like / "train.py"
    script.write_text(script.read_text().replace("'data.npz'", "'data.channels_first.npz'"))
    result = kmx("migrate", str(script), env=keras_home(tmp_path, "channels_first"))
    assert (result.exit_code, result.stdout) == (0, "")


def test_the_data_file_is_found_from_the_current_folder_too(
    cifar_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = cifar_like / "scripts"
    scripts.mkdir()
    (cifar_like / "train.py").rename(scripts / "train.py")
    monkeypatch.chdir(cifar_like)
    (f,) = migrate_paths([scripts / "train.py"]).findings
    assert f.code == "KMX501" and "x_train (8, 32, 32, 3)" in f.message


def test_labels_and_other_non_image_files_are_not_reported(tmp_path: Path) -> None:
    np.save(tmp_path / "labels.npy", np.arange(10))
    script = tmp_path / "train.py"
    script.write_text(CONV + "import numpy as np\ny = np.load('labels.npy')\n")
    assert migrate_paths([script]).findings == ()


def test_a_load_kmx_tune_cannot_inspect_is_reported_in_image_code(tmp_path: Path) -> None:
    text = CONV + "import numpy as np\nx = np.load(args.data)\n"
    (f,) = migrate_source(text, "channels_first", str(tmp_path / "t.py")).findings
    assert f.code == "KMX501" and not f.fixable
    assert "may load channels_last image data" in f.message
    assert "kmx-tune convert --dry-run" in f.message and "# noqa: KMX501" in f.message
    # not image code: a data script that loads anything is not a model
    assert codes("import numpy as np\nx = np.load(args.data)\n") == []


def test_noqa_silences_a_finding_that_is_reported_only(tmp_path: Path) -> None:
    text = CONV + "import numpy as np\nx = np.load(args.data)  # noqa: KMX501\n"
    assert codes(text) == []
    assert codes(text.replace("# noqa: KMX501", "# noqa")) == []
    assert codes(text.replace("# noqa: KMX501", "# noqa: KMX999")) == ["KMX501"]


def test_to_channels_last_reports_channels_first_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 8, 8), np.float32))
    script = tmp_path / "t.py"
    script.write_text(CONV + "import numpy as np\nx = np.load('x.npy')\n")
    monkeypatch.chdir(tmp_path)
    (f,) = migrate_paths([script], "channels_last").findings
    assert "loads channels_first image data (x (4, 3, 8, 8))" in f.message
    assert "kmx-tune convert --to channels_last x.npy, then load 'x.channels_last.npy'" in (
        f.message
    )


@pytest.mark.parametrize(
    "call",
    ["HDF5Matrix('data.h5', 'x_train')", "h5py.File('data.h5', 'r')['x_train'][:]"],
)
def test_hdf5_loads_in_image_code_are_reported(call: str) -> None:
    (f,) = migrate_source(CONV + f"x = {call}\n").findings
    assert f.code == "KMX502" and not f.fixable
    assert "kmx-tune convert data.h5" in f.message


def test_an_hdf5_dataset_saved_channels_last_is_reported_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import h5py

    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["x_train"] = np.zeros((4, 16, 16, 3), np.uint8)
        f["y_train"] = np.zeros((4, 1))
    script = tmp_path / "train.py"
    script.write_text(
        CONV + "x = HDF5Matrix('data.h5', 'x_train')\ny = HDF5Matrix('data.h5', 'y_train')\n"
    )
    monkeypatch.chdir(tmp_path)
    (f,) = migrate_paths([script]).findings  # the labels are not images
    assert f.code == "KMX502" and f.line == 2
    assert "loads channels_last image data (x_train (4, 16, 16, 3))" in f.message
    assert "kmx-tune convert data.h5, then load 'data.channels_first.h5'" in f.message
    assert kmx("convert", "--in-place", "data.h5").exit_code == 0
    assert migrate_paths([script]).findings == ()


def test_keras_datasets_follow_keras_json_and_mnist_needs_its_channel_axis(
    tmp_path: Path,
) -> None:
    # cifar10.load_data() returns (N, 3, 32, 32) under a channels_first keras.json
    # (keras/datasets/cifar10.py transposes only for channels_last): no data finding,
    # but the file depends on keras.json
    cifar = tmp_path / "cifar.py"
    cifar.write_text("from keras.datasets import cifar10\n(x, y), _ = cifar10.load_data()\n")
    env_last = keras_home(tmp_path, "channels_last")
    result = kmx("migrate", str(cifar), env=env_last)
    assert result.exit_code == 1 and " KMX601 " in result.stdout and "KMX50" not in result.stdout
    # mnist.load_data() gives (N, 28, 28): the channel axis the code adds is found
    mnist = tmp_path / "mnist.py"
    mnist.write_text(
        CONV + "from keras.datasets import mnist\n(x, y), _ = mnist.load_data()\n"
        "x = x.reshape(x.shape[0], 28, 28, 1)\n"
    )
    assert [f.code for f in migrate_paths([mnist]).findings] == ["KMX401"]


# ---------------------------------------------------------------- item 4: keras.json


def test_keras_json_that_disagrees_is_a_finding_with_set_format(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3, input_shape=(28, 28, 1)))\n")
    env = keras_home(tmp_path, "channels_last")
    result = kmx("migrate", "--write", str(model), env=env)
    path = Path(env["KERAS_HOME"]) / "keras.json"
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f'{path}:1:1: KMX601 keras.json in effect says image_data_format "channels_last" '
        f"($KERAS_HOME={env['KERAS_HOME']}); the channels_first code needs channels_first "
        "-> kmx-tune set-format channels_first"
    ]
    assert "Fixed 1 finding(s)" in result.stderr and "1 left to fix by hand" in result.stderr
    # fixed as it says, the finding goes away
    assert kmx("set-format", "channels_first", env=env).exit_code == 0
    assert kmx("migrate", str(model), env=env).exit_code == 0


def test_no_keras_json_yet_is_channels_last_for_keras(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3))\n")
    result = kmx("migrate", str(model), env=keras_home(tmp_path, None))
    assert result.exit_code == 1
    assert "KMX601 no keras.json yet" in result.stdout
    assert "Keras-MXNet writes one with channels_last on first import" in result.stdout
    assert result.stdout.rstrip().endswith("-> kmx-tune set-format channels_first")


def test_a_keras_json_with_another_backend_is_said(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3))\n")
    env = keras_home(tmp_path, "channels_first", backend="tensorflow")
    result = kmx("migrate", str(model), env=env)
    assert 'backend "tensorflow"' in result.stdout and "set-format channels_first" in result.stdout
    env_override = {**keras_home(tmp_path, "channels_first"), "KERAS_BACKEND": "tensorflow"}
    result = kmx("migrate", str(model), env=env_override)
    assert "KERAS_BACKEND=tensorflow in this environment" in result.stdout
    assert "unset KERAS_BACKEND" in result.stdout


def test_code_that_sets_the_format_itself_needs_no_keras_json(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "K.set_image_data_format('channels_last')\nm.add(Conv2D(8, 3))\n")
    result = kmx("migrate", "--write", str(model), env=keras_home(tmp_path, "channels_last"))
    assert result.exit_code == 0 and "KMX601" not in result.stdout
    assert "set_image_data_format('channels_first')" in model.read_text()


def test_code_without_image_layers_does_not_depend_on_keras_json(tmp_path: Path) -> None:
    util = tmp_path / "util.py"
    util.write_text("def f(x):\n    return x + 1\n")
    result = kmx("migrate", str(util), env=keras_home(tmp_path, "channels_last"))
    assert (result.exit_code, result.stdout) == (0, "")


def test_to_channels_last_wants_a_channels_last_keras_json(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3))\n")
    result = kmx(
        "migrate", "--to", "channels_last", str(model), env=keras_home(tmp_path, "channels_first")
    )
    assert "-> kmx-tune set-format channels_last" in result.stdout


def test_an_unreadable_keras_json_gets_the_repair_command(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3))\n")
    env = keras_home(tmp_path, None)
    (Path(env["KERAS_HOME"]) / "keras.json").write_text("{broken")
    result = kmx("migrate", str(model), env=env)
    assert "KMX601" in result.stdout and "not valid JSON" in result.stdout
    assert result.stdout.rstrip().endswith("-> kmx-tune set-format channels_first --force")


def test_the_core_checks_keras_json_only_when_given_one(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(CONV + "m.add(Conv2D(8, 3))\n")
    assert migrate_paths([model]).findings == ()
    state = keras_config.read(env=keras_home(tmp_path, "channels_last"))
    (f,) = migrate_paths([model], keras_json=state).findings
    assert f.code == "KMX601" and f.path == str(state.location.path)


@pytest.mark.parametrize(
    "line",
    [
        "os.environ['KERAS_BACKEND'] = 'tensorflow'",
        'os.environ["KERAS_BACKEND"] = "theano"',
        "os.environ.setdefault('KERAS_BACKEND', 'tensorflow')",
        "os.putenv('KERAS_BACKEND', 'cntk')",
    ],
)
def test_code_that_sets_another_backend_is_reported(line: str) -> None:
    (f,) = migrate_source(f"import os\n{line}\n").findings
    assert f.code == "KMX602" and not f.fixable and "not MXNet" in f.message


def test_code_that_sets_mxnet_is_fine() -> None:
    assert codes("import os\nos.environ['KERAS_BACKEND'] = 'mxnet'\n") == []


# ---------------------------------------------------------------- item 5: axes by indexing

NEW_AXIS = [
    ("ellipsis newaxis", "x_train = x_train[..., np.newaxis]\n",
     "x_train = x_train[:, np.newaxis, ...]\n"),
    ("ellipsis None", "x = x[..., None]\n", "x = x[:, None, ...]\n"),
    ("no spaces", "x = x[...,numpy.newaxis]\n", "x = x[:,numpy.newaxis,...]\n"),
    ("slices None", "x = x[:, :, :, None]\n", "x = x[:, None, :, :]\n"),
    ("slices newaxis volumes", "v = v[:, :, :, :, np.newaxis]\n",
     "v = v[:, np.newaxis, :, :, :]\n"),
]  # fmt: skip


@pytest.mark.parametrize(("before", "after"), [c[1:] for c in NEW_AXIS],
                         ids=[c[0] for c in NEW_AXIS])  # fmt: skip
def test_channel_axis_added_by_indexing_is_moved_and_back(before: str, after: str) -> None:
    first = migrate_source(CONV + before, "channels_first")
    assert [(f.code, f.fixable) for f in first.findings] == [("KMX402", True)]
    assert first.new_source == (CONV + after).encode()
    back = migrate_source(CONV + after, "channels_last")
    assert back.new_source == (CONV + before).encode()
    assert codes(CONV + after) == []  # already migrated: nothing left


def test_indexing_without_image_layers_is_reported_not_rewritten() -> None:
    (f,) = migrate_source("x = x[..., np.newaxis]\n").findings
    assert f.code == "KMX402" and not f.fixable


@pytest.mark.parametrize(
    "line",
    ["y = y[:, None]\n", "y = y[:, np.newaxis]\n", "z = x[..., 0]\n", "z = x[:, :, None, :]\n",
     "m = x[1:, :, :, None]\n", "w = x[None, ...]\n"],
)  # fmt: skip
def test_other_indexing_is_left_alone(line: str) -> None:
    assert codes(CONV + line) == []
    assert codes(CONV + line, "channels_last") == []
