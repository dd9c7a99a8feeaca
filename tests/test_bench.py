"""`kmx-tune bench`: the statistics, the settings it sweeps, the one-line failures, the
text as a pipe gets it, and real runs: Keras-MXNet models trained in a real
keras-mxnet venv (Python 3.8), the MXNet-graph fallback in a venv without Keras."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from kmx_tune.bench import (
    _cells,
    _notes,
    _ratio,
    parse_model_spec,
    run_bench,
)
from kmx_tune.bench.failures import error_message
from kmx_tune.bench.model import (
    BenchResult,
    Cell,
    KindRow,
    ModelInfo,
    Spread,
    attribution_rows,
)
from kmx_tune.bench.operators import BATCHNORM, BIAS_ADD, TRANSPOSES, by_kind
from kmx_tune.bench.settings import ProcessSetting, bulk_values, process_settings
from kmx_tune.errors import KmxError, UsageError
from kmx_tune.target import IN_TARGET_DIR, Target
from tests.cli import kmx, kmx_json

DATA = Path(__file__).parent / "data" / "bench"


def _in_target_bench() -> ModuleType:
    """kmx_bench.py as a module: it runs in the target, but its helpers are plain Python."""
    spec = importlib.util.spec_from_file_location("kmx_bench", IN_TARGET_DIR / "kmx_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the statistics

BULK = "MXNET_EXEC_BULK_EXEC_TRAIN"


def _times(first: list[float], last: list[float]) -> dict[tuple[int, int], list[float]]:
    """One worker with one bulk value: cell 0 is channels_first, cell 1 channels_last."""
    return {(0, 0): first, (0, 1): last}


def test_the_prediction_is_the_median_of_per_round_ratios() -> None:
    # channels_last takes 1.8x as long in every round while the machine slows down 4x:
    # the paired ratio has no spread although each format's step time has a lot
    first = [0.05, 0.05, 0.10, 0.10, 0.20]
    last = [t * 1.8 for t in first]
    ratio = _ratio(_times(first, last), [None], 5)
    assert (ratio.q1, ratio.median, ratio.q3) == (
        pytest.approx(1.8),
        pytest.approx(1.8),
        pytest.approx(1.8),
    )


def test_cells_measure_speedup_against_the_current_set_up_round_by_round() -> None:
    settings = [ProcessSetting((("OMP_NUM_THREADS", None),), True)]
    first = [0.05, 0.10, 0.20]
    last = [0.10, 0.20, 0.40]
    cells = _cells(settings, [None], "train", {}, _times(first, last), 64, "channels_last", 3)
    cf, cl = cells
    assert (cf.format, cl.format) == ("channels_first", "channels_last")
    assert cf.current and cl.current
    assert cl.speedup.median == pytest.approx(1.0)  # the reference: keras.json's format
    assert cf.speedup.median == pytest.approx(2.0)
    assert cf.step_ms.median == pytest.approx(100.0)
    assert cf.images_per_s == pytest.approx(64 / 0.1)
    assert dict(cf.settings) == {"OMP_NUM_THREADS": None, BULK: None}


def _result(cells: tuple[Cell, ...], current_format: str = "channels_last") -> BenchResult:
    return BenchResult(
        python="/venv/bin/python",
        mxnet_version="1.9.1",
        keras_version="2.2.4.3",
        ctx="cpu",
        mode="train",
        batch=64,
        model=ModelInfo(
            "keras", "a CNN", {"Conv2D": 4}, 1000, {"channels_first": [[None, 3, 32, 32]]}
        ),
        warmup=3,
        rounds=4,
        steps_per_round=2,
        cpu_count=2,
        physical_cores=2,
        openmp="gnu",
        load_average=(1.0, 1.2),
        current_format=current_format,
        current_format_from="/home/me/.keras/keras.json",
        cells=cells,
        ratio=Spread(1.9, 1.8, 2.0, 1.7, 2.1),
        attribution=(KindRow(BATCHNORM, 10.0, 60.0), KindRow(BIAS_ADD, 30.0, 20.0)),
        profiled_steps=3,
        elapsed_s=60.0,
        quick=False,
    )


def _cell(fmt: str, omp: str | None, bulk: str | None, speedup: float, current: bool) -> Cell:
    ms = 100.0 / speedup
    return Cell(
        format=fmt,
        settings=(("OMP_NUM_THREADS", omp), (BULK, bulk)),
        current=current,
        step_ms=Spread(ms, ms, ms, ms, ms),
        images_per_s=64 / ms * 1000,
        speedup=Spread(speedup, speedup * 0.95, speedup * 1.05, speedup * 0.9, speedup * 1.1),
    )


SWEEP = (
    _cell("channels_first", None, None, 1.9, True),
    _cell("channels_last", None, None, 1.0, True),
    _cell("channels_first", None, "0", 1.5, False),
    _cell("channels_last", None, "0", 0.9, False),
    _cell("channels_first", "2", None, 3.1, False),
    _cell("channels_last", "2", None, 1.7, False),
    _cell("channels_first", "2", "0", 2.6, False),
    _cell("channels_last", "2", "0", 1.5, False),
)


def test_the_best_combination_comes_with_exports_and_set_format() -> None:
    result = _result(SWEEP)
    best = result.best
    assert (best.format, dict(best.settings)["OMP_NUM_THREADS"]) == ("channels_first", "2")
    exports, commands = result.changes(best)
    assert exports == ["export OMP_NUM_THREADS=2"]
    assert commands == ["kmx-tune set-format channels_first"]
    data = result.to_json()
    assert data["schema"] == "kmx-tune/bench/2"
    assert data["ratio"]["median"] == pytest.approx(1.9)
    assert data["best"]["exports"] == ["export OMP_NUM_THREADS=2"]
    assert data["best"]["commands"] == ["kmx-tune set-format channels_first"]
    assert data["best"]["speedup"]["median"] == pytest.approx(3.1)
    assert data["attribution"]["kinds"][0]["kind"] == BATCHNORM


def test_a_setting_that_buys_a_percent_or_two_is_not_advised() -> None:
    cells = (
        _cell("channels_first", None, None, 2.23, True),
        _cell("channels_last", None, None, 1.0, True),
        _cell("channels_first", None, "0", 2.30, False),  # 3% faster: noise here, not advice
        _cell("channels_last", None, "0", 1.02, False),
    )
    result = _result(cells)
    assert result.best is cells[0]
    assert result.changes(result.best) == ([], ["kmx-tune set-format channels_first"])


def test_a_best_setting_that_unsets_a_variable_says_unset() -> None:
    cells = (
        _cell("channels_first", "1", None, 1.0, True),
        _cell("channels_last", "1", None, 0.5, True),
        _cell("channels_first", None, None, 1.4, False),
        _cell("channels_last", None, None, 0.7, False),
    )
    result = _result(cells, current_format="channels_first")
    exports, commands = result.changes(result.best)
    assert exports == ["unset OMP_NUM_THREADS"]
    assert commands == []  # already channels_first


def test_settings_swept_are_one_physical_and_logical_cores_and_the_current_value() -> None:
    settings = process_settings(
        {"OMP_NUM_THREADS": "3"}, ctx="cpu", physical=4, logical=8, intel_openmp=False, quick=False
    )
    assert settings[0] == ProcessSetting((("OMP_NUM_THREADS", "3"),), True)
    assert [dict(s.values)["OMP_NUM_THREADS"] for s in settings] == ["3", "1", "4", "8"]
    # on a 2-core machine without hyper-threading, 1 and 2 (and unset, as it is now)
    small = process_settings({}, ctx="cpu", physical=2, logical=2, intel_openmp=False, quick=False)
    assert [dict(s.values)["OMP_NUM_THREADS"] for s in small] == [None, "1", "2"]
    assert process_settings(
        {}, ctx="cpu", physical=2, logical=2, intel_openmp=False, quick=True
    ) == [ProcessSetting((("OMP_NUM_THREADS", None),), True)]


def test_kmp_affinity_is_swept_only_for_intel_openmp_and_autotune_only_on_gpu() -> None:
    intel = process_settings({}, ctx="cpu", physical=2, logical=2, intel_openmp=True, quick=False)
    values = [dict(s.values) for s in intel]
    assert {v["KMP_AFFINITY"] for v in values} == {None, "granularity=fine,compact,1,0"}
    assert len(values) == 6
    gpu = process_settings({}, ctx="gpu", physical=2, logical=2, intel_openmp=False, quick=False)
    assert [dict(s.values) for s in gpu] == [
        {"MXNET_CUDNN_AUTOTUNE_DEFAULT": v} for v in (None, "0", "1", "2")
    ]
    assert bulk_values({}, "train", quick=False) == [None, "0"]
    assert bulk_values({"MXNET_EXEC_BULK_EXEC_INFERENCE": "0"}, "inference", quick=False) == [
        None,
        "1",
    ]


def test_where_the_difference_goes_groups_operators_by_layer_type() -> None:
    ms = {
        "channels_first": {"BatchNorm": 5.0, "_backward_BatchNorm": 3.0, "transpose": 0.5},
        "channels_last": {
            "BatchNorm": 20.0,
            "_backward_BatchNorm": 25.0,
            "transpose": 8.0,
            "_backward_broadcast_add": 2.0,
        },
    }
    rows = attribution_rows(ms, by_kind)
    assert rows[0] == KindRow(BATCHNORM, 8.0, 45.0)
    assert rows[1] == KindRow(TRANSPOSES, 0.5, 8.0)
    assert rows[2] == KindRow(BIAS_ADD, 0.0, 2.0)


def test_a_busy_machine_is_noted_before_anyone_changes_omp_num_threads() -> None:
    assert _notes(1.2, 1.9, 2, {}) == []
    (note,) = _notes(1.2, 9.5, 2, {})
    assert note.startswith("this machine was busy (load average up to 9.5 on 2 CPUs)")
    assert "run bench again when it is quieter" in note
    (keras,) = _notes(None, None, 2, {"model_kind": "symbolic", "keras_error": "No module"})
    assert "did not import" in keras and "No module" in keras


# ---------------------------------------------------------------- errors


def test_mxnets_own_message_is_shown_not_its_traceback_header() -> None:
    """B5: MXNetError text starts with "Traceback (most recent call last):"; the error
    must show the real message (texts captured from mxnet 1.9.1, see data/bench)."""
    errors = json.loads((DATA / "mxnet-1.9.1-errors.json").read_text())
    bench = _in_target_bench()

    def line(name: str) -> str:
        err = errors[name]
        exc = type(err["type"], (Exception,), {})(err["text"])
        return str(bench.error_line(exc))

    big = line("nd_failed_to_allocate")
    assert "Traceback" not in big
    assert "larger than 2^31 elements" in big
    assert line("failed_to_allocate") == "MXNetError: Failed to allocate CPU Memory"
    assert "operands could not be broadcast" in line("nd_shapes")
    assert "kernel size exceed input" in line("kernel_exceeds_input")

    message = error_message(
        {"kind": "failed", "message": big, "mxnet_version": "1.9.1"}, "py", batch=70000, model=None
    )
    assert message.startswith("--batch 70000: the benchmark's arrays do not fit in memory")
    assert "larger than 2^31 elements" in message and "try a smaller --batch" in message


GPU_ERROR = (
    "MXNetError: Traceback (most recent call last):\n"
    '  File "../src/operator/nn/./cudnn/cudnn_convolution-inl.h", line 90\n'
    "MXNetError: Check failed: e == cudaSuccess: CUDA: no kernel image is available for "
    "execution on the device"
)


def test_a_gpu_the_wheel_has_no_kernels_for_is_one_line() -> None:
    message = error_message({"kind": "failed", "message": GPU_ERROR}, "py", batch=64, model=None)
    assert "\n" not in message
    assert "no kernels for this GPU's architecture" in message
    assert "--ctx cpu" in message


@pytest.mark.parametrize(
    "message",
    [
        "MXNetError: Failed to allocate CPU Memory",
        "MemoryError",
        "OverflowError: Python int too large to convert to C unsigned long",
    ],
)
def test_a_batch_too_big_for_memory_says_to_lower_batch(message: str) -> None:
    text = error_message({"kind": "failed", "message": message}, "py", batch=100000, model=None)
    assert "\n" not in text
    assert text.startswith("--batch 100000: ")
    assert "smaller --batch" in text and "doctor" not in text


def _fake_python(tmp_path: Path, body: str) -> Path:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n" + body)
    fake.chmod(0o755)
    return fake


# The hardware seam: how a CUDA MXNet dies on an H100 (a CUDA error in MXNet's engine
# thread aborts the process before any report), and how the OS ends a target that
# asked for too much memory (the OOM killer's SIGKILL; C++'s bad_alloc).
ENDINGS = {
    "no_kernel_image": (
        "echo '[12:00:00] src/engine/threaded_engine.cc:331: Check failed: "
        "e == cudaSuccess: CUDA: no kernel image is available for execution on the device' >&2\n"
        "echo \"terminate called after throwing an instance of 'dmlc::Error'\" >&2\nexit 134\n",
        "no kernels for this GPU's architecture",
    ),
    "oom_killer": ("kill -9 $$\n", "out-of-memory killer; try a smaller --batch"),
    "bad_alloc": (
        "echo \"terminate called after throwing an instance of 'std::bad_alloc'\" >&2\n"
        "echo '  what():  std::bad_alloc' >&2\nexit 134\n",
        "do not fit in memory",
    ),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_a_worker_that_dies_is_explained_in_one_line(tmp_path: Path, ending: str) -> None:
    body, expected = ENDINGS[ending]
    fake = _fake_python(tmp_path, body)
    with pytest.raises(KmxError, match=expected.replace("(", r"\(")):
        run_bench(
            Target(str(fake)), ctx="gpu" if ending == "no_kernel_image" else "cpu", quick=True
        )
    result = kmx("bench", "--python", str(fake), "--quick", "--batch", "4096")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert expected in errors[0]


@pytest.mark.skipif(
    importlib.util.find_spec("mxnet") is not None, reason="this interpreter has mxnet"
)
def test_a_target_without_mxnet_points_at_install_mxnet() -> None:
    code, data = kmx_json("bench", "--python", sys.executable, "--quick")
    assert code == 1
    assert data["error"].startswith("mxnet cannot be imported")
    assert "kmx-tune install-mxnet" in data["error"] and "kmx-tune doctor" in data["error"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("train.py", "give FILE:FUNCTION"),
        ("train.py:", "give FILE:FUNCTION"),
        ("train.py:build-model", "is not a Python function name"),
        ("nope.py:build", "nope.py: no such file"),
        ("fifo.py:build", "fifo.py: is not a regular file"),  # a FIFO: and it never hangs
    ],
)
def test_a_bad_model_spec_is_one_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, expected: str
) -> None:
    (tmp_path / "train.py").write_text("def build(): pass\n")
    os.mkfifo(tmp_path / "fifo.py")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=expected):
        parse_model_spec(spec)
    result = kmx("bench", "--model", spec)
    assert result.exit_code == 2
    assert result.stderr.count("Error:") == 1 and expected in result.stderr


# ---------------------------------------------------------------- the text in a pipe


def test_piped_text_keeps_each_table_row_on_one_line() -> None:
    """Issue 15 item 7: when piped, rich folded the bench table at 80 columns."""
    from kmx_tune.commands.bench import render_text

    cells = tuple(
        Cell(
            c.format,
            (("KMP_AFFINITY", "granularity=fine,compact,1,0"),) + c.settings,
            c.current,
            c.step_ms,
            c.images_per_s,
            c.speedup,
        )
        for c in SWEEP
    )
    result = _result(cells)
    import click
    from click.testing import CliRunner

    @click.command()
    def show() -> None:
        render_text(result)

    out = CliRunner().invoke(show, [], env={"COLUMNS": "80"}).output
    rows = [line for line in out.splitlines() if line.startswith("granularity=fine,compact,1,0")]
    assert len(rows) == 4, out
    for row in rows:  # the settings and both formats' figures on the same line
        assert row.count("x)") == 2, row
    assert any(len(line) > 80 for line in out.splitlines())
    assert "channels_last (your keras.json)" in out


# ---------------------------------------------------------------- real runs


def _bench_json(*args: str) -> dict[str, Any]:
    code, data = kmx_json("bench", *args)
    assert code == 0, data
    return data


@pytest.mark.venv
def test_keras_bench_trains_both_formats_and_names_batchnorm(keras_venv: Path) -> None:
    data = _bench_json("--python", str(keras_venv), "--quick")
    assert data["schema"] == "kmx-tune/bench/2"
    assert data["model"]["kind"] == "keras" and data["keras_version"] == "2.2.4.3"
    assert data["model"]["layers"]["BatchNormalization"] == 4
    assert data["model"]["input_shapes"] == {
        "channels_first": [[None, 3, 32, 32]],
        "channels_last": [[None, 32, 32, 3]],
    }
    for fmt in ("channels_first", "channels_last"):
        assert data["forms"][fmt]["images_per_s"] > 0
    ratio = data["ratio"]
    assert ratio["iqr"][0] <= ratio["median"] <= ratio["iqr"][1]
    # the profiled operator time: BatchNorm over the last axis is the largest cost
    kinds = data["attribution"]["kinds"]
    costs = [k for k in kinds if k["difference_ms"] > 0]
    assert costs[0]["kind"] == BATCHNORM, kinds
    assert any(k["kind"] == TRANSPOSES and k["difference_ms"] > 0 for k in kinds)
    # nothing of the user's Keras set-up was touched
    assert not (Path(os.environ["HOME"]) / ".keras").exists()


USER_MODEL = """\
import sys
from keras import backend as K
from keras import layers, models

def build():
    shape = (1, 16, 16) if K.image_data_format() == "channels_first" else (16, 16, 1)
    m = models.Sequential()
    m.add(layers.Conv2D(8, (3, 3), padding="same", input_shape=shape))
    m.add(layers.BatchNormalization())
    m.add(layers.Activation("relu"))
    m.add(layers.MaxPooling2D())
    m.add(layers.Flatten())
    m.add(layers.Dense(3, activation="softmax"))
    m.compile(loss="categorical_crossentropy", optimizer="sgd")
    return m

def fixed_shape():
    m = models.Sequential()
    m.add(layers.Conv2D(4, (3, 3), input_shape=(16, 16, 1)))
    m.add(layers.Flatten())
    m.add(layers.Dense(2))
    m.compile(loss="mse", optimizer="sgd")
    return m

def fixed_cube():  # (16, 16, 16) builds in both formats, wrongly in one
    m = models.Sequential()
    m.add(layers.Conv2D(4, (3, 3), input_shape=(16, 16, 16)))
    m.add(layers.Flatten())
    m.add(layers.Dense(2))
    m.compile(loss="mse", optimizer="sgd")
    return m

def broken():
    return helper_that_does_not_exist()

if __name__ == "__main__":
    sys.exit("the __main__ block must not run")
"""


@pytest.mark.venv
def test_a_users_model_is_trained_in_both_formats(keras_venv: Path, tmp_path: Path) -> None:
    model = tmp_path / "my model.py"
    model.write_text(USER_MODEL)
    data = _bench_json("--python", str(keras_venv), "--quick", "--model", f"{model}:build")
    assert data["model"]["kind"] == "user"
    assert data["model"]["spec"] == f"{model}:build"
    assert data["model"]["layers"] == {
        "Conv2D": 1,
        "BatchNormalization": 1,
        "Activation": 1,
        "MaxPooling2D": 1,
        "Flatten": 1,
        "Dense": 1,
    }
    assert data["model"]["input_shapes"]["channels_first"] == [[None, 1, 16, 16]]
    assert data["ratio"]["median"] > 0


@pytest.mark.venv
@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("fixed_shape", "kernel size exceed input when built for channels_first (model.py, line"),
        ("fixed_shape", "; it must build for K.image_data_format(): (C, H, W) inputs"),
        (
            "fixed_cube",
            "built the same input shape (16, 16, 16) for channels_first and channels_last",
        ),
        ("broken", "broken() raised NameError: name 'helper_that_does_not_exist' is not defined"),
        ("missing", "defines no missing"),
    ],
)
def test_a_users_model_that_fails_is_one_line(
    keras_venv: Path, tmp_path: Path, function: str, expected: str
) -> None:
    model = tmp_path / "model.py"
    model.write_text(USER_MODEL)
    result = kmx("bench", "--python", str(keras_venv), "--quick", "--model", f"{model}:{function}")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f"Error: --model {model}:{function}: ")
    assert expected in errors[0]
    if function == "broken":
        assert "(model.py, line 34)" in errors[0]


@pytest.mark.venv
def test_without_keras_the_graph_keras_mxnet_builds_is_timed(mxnet_venv: Path) -> None:
    data = _bench_json("--python", str(mxnet_venv), "--quick", "--batch", "16")
    assert data["model"]["kind"] == "symbolic"
    assert data["keras_version"] is None
    assert any("did not import" in note for note in data["notes"])
    # the layout-sensitive operators Keras-MXNet emits in channels_last are all there
    kinds = {k["kind"]: k for k in data["attribution"]["kinds"]}
    for kind in (BATCHNORM, TRANSPOSES, BIAS_ADD):
        assert kinds[kind]["channels_last_ms"] > 0, kind
    assert kinds["Concatenate (Concat)"]["channels_last_ms"] > 0
    assert kinds["pooling (Pooling)"]["channels_last_ms"] > 0
    assert kinds["Flatten/Reshape"]["channels_first_ms"] > 0
    assert kinds[BATCHNORM]["difference_ms"] > 0


@pytest.mark.venv
def test_the_sweep_runs_every_setting_and_names_the_best(mxnet_venv: Path) -> None:
    data = _bench_json("--python", str(mxnet_venv), "--batch", "8", "--repeats", "2")
    omp = {cell["settings"]["OMP_NUM_THREADS"] for cell in data["cells"]}
    assert {None, "1"} <= omp
    bulk = {cell["settings"][BULK] for cell in data["cells"]}
    assert bulk == {None, "0"}
    assert len(data["cells"]) == len(omp) * 2 * 2
    assert sum(cell["current_settings"] for cell in data["cells"]) == 2
    best = data["best"]
    assert best["format"] in ("channels_first", "channels_last")
    for line in best["exports"]:
        assert line.startswith(("export ", "unset "))


@pytest.mark.venv
def test_a_batch_past_mxnets_limits_says_to_lower_batch(mxnet_venv: Path) -> None:
    """B5: MXNet's message, not "MXNetError: Traceback (most recent call last):"."""
    import resource

    def limit_memory() -> None:  # 8 GiB of address space: the arrays fit, MXNet's don't
        resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "kmx_tune", "bench", "--python", str(mxnet_venv)]
        + ["--quick", "--batch", "70000"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
        preexec_fn=limit_memory,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: --batch 70000: ") and "smaller --batch" in errors[0]
    assert "Traceback (most recent call last)" not in errors[0]
