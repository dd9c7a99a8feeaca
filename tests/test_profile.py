"""`kmx-tune profile`: the statistics it reads, and real runs of real scripts under
MXNet 1.9.1's profiler through the real command line."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kmx_tune.bench.operators import is_layout_transpose
from kmx_tune.profiling import (
    BatchNormUse,
    ProfileResult,
    layout_from,
    operators_from_aggregate,
    result_from_report,
)

DATA = Path(__file__).parent / "data" / "profile"

# A real `mx.profiler.dumps(format='json')` from mxnet 1.9.1 (CPU), cut down: a
# channels_last convolution with transposes, a swapaxes, and the C API domain.
AGGREGATE: dict[str, Any] = {
    "Time": {
        "MXNET_C_API": {
            "MXNDArrayWaitAll": {
                "Count": 1,
                "Total": 15.58,
                "Min": 15.58,
                "Max": 15.58,
                "Avg": 15.58,
            },
            "MXImperativeInvokeEx": {
                "Count": 7,
                "Total": 4.463,
                "Min": 0.035,
                "Max": 4.017,
                "Avg": 0.6376,
            },
        },
        "operator": {
            "SwapAxis": {"Count": 1, "Total": 2.609, "Min": 2.609, "Max": 2.609, "Avg": 2.609},
            "_backward_SwapAxis": {
                "Count": 1,
                "Total": 2.139,
                "Min": 2.139,
                "Max": 2.139,
                "Avg": 2.139,
            },
            "Convolution": {"Count": 1, "Total": 1.058, "Min": 1.058, "Max": 1.058, "Avg": 1.058},
            "_backward_Convolution": {
                "Count": 1,
                "Total": 0.988,
                "Min": 0.988,
                "Max": 0.988,
                "Avg": 0.988,
            },
            "transpose": {"Count": 1, "Total": 0.428, "Min": 0.428, "Max": 0.428, "Avg": 0.428},
            "DeleteVariable": {
                "Count": 5,
                "Total": 0.141,
                "Min": 0.001,
                "Max": 0.06,
                "Avg": 0.0282,
            },
        },
    },
    "Memory": {"Device Storage": {"Memory: cpu/0": {"Count": 18, "Min": 0.004, "Max": 2297}}},
    "Unit": {"Time": "ms", "Memory": "kB"},
}


def _result(aggregate: dict[str, Any] | None = AGGREGATE) -> ProfileResult:
    report = {"aggregate": aggregate, "exit_status": 0, "mxnet_version": "1.9.1"}
    return result_from_report(
        report, script="train.py", args=(), python="python", exit_status=0, env={}
    )


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("transpose", True),
        ("_backward_transpose", True),
        ("SwapAxis", True),
        ("_backward_SwapAxis", True),
        ("_npi_transpose", True),
        ("_npi_swapaxes", True),
        ("Convolution", False),
        ("_sg_mkldnn_conv", False),
        ("Reshape", False),
    ],
)
def test_layout_transposes_are_recognised_by_name(name: str, layout: bool) -> None:
    assert is_layout_transpose(name) is layout


def test_operators_are_sorted_by_total_time_and_the_c_api_is_left_out() -> None:
    ops = operators_from_aggregate(AGGREGATE)
    assert [op.name for op in ops][:3] == ["SwapAxis", "_backward_SwapAxis", "Convolution"]
    assert "MXNDArrayWaitAll" not in {op.name for op in ops}
    assert sum(op.share for op in ops) == pytest.approx(1.0)
    delete = next(op for op in ops if op.name == "DeleteVariable")
    assert (delete.count, delete.avg_ms) == (5, pytest.approx(0.141 / 5))


def test_transpose_share_counts_transpose_and_swapaxis_forward_and_backward() -> None:
    result = _result()
    assert {op.name for op in result.transpose_operators} == {
        "SwapAxis",
        "_backward_SwapAxis",
        "transpose",
    }
    total = 2.609 + 2.139 + 1.058 + 0.988 + 0.428 + 0.141
    assert result.transpose_share == pytest.approx((2.609 + 2.139 + 0.428) / total)
    assert "kmx-tune set-format channels_first" in result.advice


def test_a_profile_without_transposes_says_there_is_nothing_to_gain() -> None:
    aggregate = {
        "Time": {"operator": {"Convolution": AGGREGATE["Time"]["operator"]["Convolution"]}}
    }
    result = _result(aggregate)
    assert result.transpose_share == 0
    assert "nothing to gain" in result.advice


def test_json_rendering_carries_the_same_numbers() -> None:
    result = _result()
    data = dataclasses.replace(result, top_n=2).to_json()
    assert [op["name"] for op in data["operators"]] == ["SwapAxis", "_backward_SwapAxis"]
    assert data["operators_total"] == 6
    assert data["transpose"]["share"] == pytest.approx(result.transpose_share)


def _captured(fmt: str) -> ProfileResult:
    """The runner's real statistics from training a CIFAR-like Keras CNN (data/profile)."""
    report = json.loads((DATA / f"keras-cnn-{fmt}.stats.json").read_text())
    return result_from_report(
        report, script="train_cnn.py", args=(), python="python", exit_status=0, env={}
    )


def test_a_channels_last_keras_model_names_batchnorm_as_the_main_layout_cost() -> None:
    result = _captured("channels_last")
    layout = result.layout
    assert layout is not None
    assert layout.format == "channels_last"
    assert layout.main_cost == "batchnorm"
    bn_share = layout.share(layout.batchnorm_saving_ms or 0)
    tr_share = layout.share(layout.transpose_saving_ms)
    assert bn_share > tr_share > 0
    advice = result.advice
    assert "the model runs channels_last (Keras image_data_format channels_last" in advice
    assert "BatchNorm over the last axis (axis 3 of 4-D data)" in advice
    assert f"would save about {layout.share(layout.saving_ms):.0%} of operator time" in advice
    assert f"(BatchNorm {bn_share:.0%}, transposes {tr_share:.0%})" in advice
    assert "the main layout cost is BatchNorm over the last axis" in advice
    # what the real profiles of both formats show: Keras-MXNet's bias adds get slower
    bias = layout.share(layout.bias_add_ms)
    assert (
        f"bias adds (broadcast_add, {bias:.0%} of operator time) run slower in channels_first"
        in advice
    )
    assert "kmx-tune set-format channels_first" in advice
    data = result.to_json()
    assert data["layout"]["main_cost"] == "batchnorm"
    assert data["layout"]["saving"]["share"] == pytest.approx(bn_share + tr_share)


def test_a_channels_first_model_is_said_to_be_channels_first_already() -> None:
    result = _captured("channels_first")
    assert result.layout is not None and result.layout.format == "channels_first"
    assert result.advice.startswith(
        "the model already runs channels_first (Keras image_data_format channels_first; "
        "BatchNorm over axis 1): nothing to gain"
    )
    assert "would save little" not in result.advice


def test_the_batchnorm_saving_scales_the_profiled_time_by_the_timed_forms() -> None:
    ops = operators_from_aggregate(
        {"Time": {"operator": {"BatchNorm": {"Count": 4, "Total": 60.0}, "x": {"Total": 40.0}}}}
    )
    report = {
        "keras_format": None,
        "batchnorm": [{"axis": 3, "ndim": 4, "shape": [8, 8, 16], "calls": 2}],
        "batchnorm_timing": [
            {
                "axis": 3,
                "ndim": 4,
                "shape": [8, 8, 16],
                "calls": 2,
                "ms": 4.0,
                "channels_first_ms": 1.0,
            }
        ],
    }
    layout = layout_from(ops, report)
    assert layout.format == "channels_last"  # BatchNorm over the last axis tells it
    assert layout.batchnorm_saving_ms == pytest.approx(60.0 * 0.75)
    assert layout.share(layout.saving_ms) == pytest.approx(0.45)
    untimed = layout_from(ops, {"keras_format": "channels_last"})
    assert untimed.batchnorm_saving_ms is None
    assert "could not be timed here" in untimed.advice


@pytest.mark.parametrize(
    ("use", "last"),
    [
        (BatchNormUse(axis=3, ndim=4, shape=(8, 8, 16), calls=1), True),
        (BatchNormUse(axis=1, ndim=4, shape=(16, 8, 8), calls=1), False),
        (BatchNormUse(axis=1, ndim=2, shape=(128,), calls=1), False),  # after a Dense
        (BatchNormUse(axis=-1, ndim=None, shape=None, calls=1), False),  # shape unknown
    ],
)
def test_only_batchnorm_over_the_last_axis_of_image_data_is_a_layout_cost(
    use: BatchNormUse, last: bool
) -> None:
    assert use.last_axis is last


def _render(result: ProfileResult) -> str:
    import click
    from click.testing import CliRunner

    from kmx_tune.commands.profile import render_text

    @click.command()
    def show() -> None:
        render_text(result)

    run = CliRunner().invoke(show, [])
    assert run.exception is None, run.exception
    return run.output


def test_markup_in_the_script_path_its_error_and_operator_names_is_printed_as_text() -> None:
    """C7: these strings come from the user (and the profiler's bulk segments look like
    "[transpose,Convolution,...]"); rich must not read them as markup."""
    result = dataclasses.replace(
        _result(),
        script="a[/b].py",
        script_error="ValueError: bad path [/data/x] [bold]y",
        exit_status=1,
        trace="/tmp/[red]t.json",
        operators=(
            dataclasses.replace(
                operators_from_aggregate(AGGREGATE)[0], name="[transpose,Convolution]"
            ),
        ),
    )
    out = _render(result)
    assert "Profile of a[/b].py" in out
    assert "The script exited with status 1 (ValueError: bad path [/data/x] [bold]y)." in out
    assert "Trace: /tmp/[red]t.json" in out
    assert "[transpose,Convolution]" in out


def test_piped_profile_rows_stay_on_one_line() -> None:
    long_name = "_backward_" + "x" * 90
    result = dataclasses.replace(
        _result(),
        operators=(dataclasses.replace(operators_from_aggregate(AGGREGATE)[0], name=long_name),),
    )
    out = _render(result)
    row = next(line for line in out.splitlines() if line.startswith(long_name))
    assert row.rstrip().endswith("%")


def kmx(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


@pytest.mark.parametrize("how", ["default", "out"])
def test_an_existing_trace_is_kept_without_force(tmp_path: Path, how: str) -> None:
    """B14: as convert does with its outputs, refuse before the script runs."""
    script = tmp_path / "train.py"
    script.write_text("open('ran', 'w').close()\n")
    trace = tmp_path / ("train.profile.json" if how == "default" else "mine.json")
    trace.write_text("the user's earlier trace")
    args = (
        ["profile", str(script)]
        if how == "default"
        else ["profile", "--out", str(trace), str(script)]
    )
    proc = kmx(*args, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"Error: {trace} exists; pass --force to overwrite it, or write the trace elsewhere "
        "with --out FILE"
    )
    assert trace.read_text() == "the user's earlier trace"
    assert not (tmp_path / "ran").exists()


def test_a_missing_script_is_one_clear_error(tmp_path: Path) -> None:
    proc = kmx("profile", "nope.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "Error: nope.py: no such file; give the path of the Python script to profile"
    )


def test_a_fifo_as_the_script_is_named_as_such_and_never_hangs(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.py")
    proc = kmx("profile", "fifo.py", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "Error: fifo.py: is not a regular file (a FIFO, a device or a socket); give the path "
        "of the Python script to profile"
    )


@pytest.mark.skipif(
    importlib.util.find_spec("mxnet") is not None, reason="this interpreter has mxnet"
)
def test_a_target_without_mxnet_points_at_install_mxnet_and_doctor(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n")
    proc = kmx("profile", "--python", sys.executable, str(script), cwd=tmp_path)
    assert proc.returncode == 1
    assert "never runs" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: mxnet cannot be imported in {sys.executable}")
    assert "kmx-tune install-mxnet --python" in lines[0]
    assert "kmx-tune doctor --python" in lines[0]
    assert "Traceback" not in proc.stderr


# A small Keras-MXNet-like channels_last step: transpose in, convolve, transpose out.
CONV_SCRIPT = """\
import json, os, sys
import mxnet as mx
from mxnet import autograd
import helper  # a module beside the script: sys.path[0] must be the script's folder

print(json.dumps({
    "argv": sys.argv, "name": __name__, "cwd": os.getcwd(), "path0": sys.path[0],
    "bulk": [os.environ.get("MXNET_EXEC_BULK_EXEC_TRAIN"),
             os.environ.get("MXNET_EXEC_BULK_EXEC_INFERENCE")],
}))
x = mx.nd.random.uniform(shape=(4, 16, 16, 3))
w = mx.nd.random.uniform(shape=(8, 3, 3, 3))
w.attach_grad()
for _ in range(3):
    with autograd.record():
        y = mx.nd.transpose(x, axes=(0, 3, 1, 2))
        z = mx.nd.Convolution(y, w, kernel=(3, 3), num_filter=8, no_bias=True, pad=(1, 1))
        z = mx.nd.transpose(z, axes=(0, 2, 3, 1))
        loss = z.sum()
    loss.backward()
mx.nd.waitall()
mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
if mode == "raise":
    helper.fail()
if mode == "exit":
    sys.exit(3)
"""


@pytest.fixture
def conv_script(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helper.py").write_text("def fail():\n    raise RuntimeError('loss is nan')\n")
    script = folder / "train.py"
    script.write_text(CONV_SCRIPT)
    return script


@pytest.mark.venv
def test_profiles_a_real_script_as_python_would_run_it(
    mxnet_venv: Path, conv_script: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    rel = os.path.relpath(conv_script, work)
    proc = kmx(
        "profile", "--python", str(mxnet_venv), "--top", "4", rel, "ok", "--lr", "0.1", cwd=work
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[0])
    assert seen["argv"] == [rel, "ok", "--lr", "0.1"]
    assert seen["name"] == "__main__"
    assert seen["cwd"] == str(work)
    assert seen["path0"] == str(conv_script.parent)
    assert seen["bulk"] == ["0", "0"]

    out = proc.stdout
    assert "Profile of" in out and "mxnet 1.9.1" in out
    assert "Convolution" in out and "transpose" in out
    assert "Layout: transposes take" in out and "of operator time" in out
    assert "MXNET_EXEC_BULK_EXEC_TRAIN=0" in out
    trace = work / "train.profile.json"  # the default: SCRIPTNAME.profile.json here
    assert f"Trace: {trace}" in out
    events = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name") == "Convolution" for e in events)


@pytest.mark.venv
def test_json_output_stays_clean_and_names_the_transposes(
    mxnet_venv: Path, conv_script: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "out" / "t.json"
    trace.parent.mkdir()
    proc = kmx(
        "profile",
        "--python",
        str(mxnet_venv),
        "--out",
        str(trace),
        "--json",
        str(conv_script),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)  # the script's own print went to stderr
    assert '"argv"' in proc.stderr
    names = {op["name"] for op in data["operators"]}
    assert {"Convolution", "_backward_Convolution", "transpose"} <= names
    assert data["transpose"]["operators"] == ["transpose"]
    assert 0 < data["transpose"]["share"] < 1
    assert data["trace"] == str(trace) and trace.is_file()
    conv = next(op for op in data["operators"] if op["name"] == "Convolution")
    assert conv["count"] == 3


@pytest.mark.venv
def test_a_script_that_exits_non_zero_keeps_its_status_and_its_profile(
    mxnet_venv: Path, conv_script: Path, tmp_path: Path
) -> None:
    proc = kmx("profile", "--python", str(mxnet_venv), str(conv_script), "exit", cwd=tmp_path)
    assert proc.returncode == 3
    assert "Convolution" in proc.stdout
    assert "The script exited with status 3." in proc.stdout
    assert (tmp_path / "train.profile.json").is_file()


@pytest.mark.venv
def test_a_script_that_raises_shows_its_own_traceback(
    mxnet_venv: Path, conv_script: Path, tmp_path: Path
) -> None:
    proc = kmx("profile", "--python", str(mxnet_venv), str(conv_script), "raise", cwd=tmp_path)
    assert proc.returncode == 1
    err = proc.stderr
    assert "Traceback (most recent call last):" in err
    assert err.rstrip().endswith("RuntimeError: loss is nan")
    # as under `python train.py raise`: the script's frames only, not kmx-tune's runner
    assert "kmx_profile_runner" not in err and "runpy" not in err
    assert 'helper.py", line 2, in fail' in err
    assert "Convolution" in proc.stdout  # the work done before the failure is profiled
    assert "The script exited with status 1 (RuntimeError: loss is nan)." in proc.stdout
    assert (tmp_path / "train.profile.json").is_file()


@pytest.mark.venv
def test_a_trace_left_by_an_earlier_run_is_not_passed_off_as_this_runs(
    mxnet_venv: Path, tmp_path: Path
) -> None:
    # The script points MXNet's profiler elsewhere, so nothing is written at our path:
    # the stale file there must not be reported as this run's trace. (MXNet's set_config
    # removes an existing file at the trace path when the runner configures it.)
    script = tmp_path / "own.py"
    script.write_text(
        "import mxnet as mx\n"
        "mx.profiler.set_config(profile_all=True, filename='mine.json')\n"
        "mx.nd.ones((2, 2)).asnumpy()\n"
    )
    stale = tmp_path / "own.profile.json"
    stale.write_text('{"traceEvents": []}')
    proc = kmx("profile", "--python", str(mxnet_venv), "--force", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Trace: none was written" in proc.stdout


def test_a_folder_at_the_default_trace_path_names_the_path_not_none(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n")
    (tmp_path / "train.profile.json").mkdir()
    proc = kmx("profile", str(script), cwd=tmp_path)
    assert proc.returncode == 2
    assert "never runs" not in proc.stdout
    err = proc.stderr.strip()
    assert "None" not in err
    assert err.startswith(f"Error: {tmp_path / 'train.profile.json'}: is a folder")
    assert "--out" in err


@pytest.mark.parametrize("where", ["out", "cwd"])
def test_an_unwritable_trace_path_fails_before_the_script_runs(tmp_path: Path, where: str) -> None:
    # /proc refuses new files even to root, so this holds for every user
    script = tmp_path / "train.py"
    script.write_text("print('ran')\n")
    if where == "out":
        proc = kmx("profile", "--out", "/proc/kmx-trace.json", str(script), cwd=tmp_path)
    else:
        proc = kmx("profile", str(script), cwd=Path("/proc"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ran" not in proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: cannot write the trace /proc/")
    assert "--out" in lines[0]


IDENTITY_SCRIPT = """\
import json, sys
print(json.dumps({"file": __file__, "argv0": sys.argv[0], "path0": sys.path[0]}))
"""


@pytest.mark.venv
def test_file_and_path0_are_what_python_gives_a_symlinked_script(
    mxnet_venv: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "run.py").write_text(IDENTITY_SCRIPT)
    links = tmp_path / "links"
    links.mkdir()
    (links / "run.py").symlink_to(real / "run.py")
    rel = os.path.join("links", "run.py")
    plain = subprocess.run(
        [str(mxnet_venv), rel], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    proc = kmx("profile", "--python", str(mxnet_venv), rel, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # Python >= 3.9 makes __main__.__file__ absolute; sys.path[0] is the real folder
    assert json.loads(proc.stdout.splitlines()[0]) == json.loads(plain.stdout)


@pytest.mark.venv
def test_numpy_124_gives_exactly_one_error_line(tmp_path: Path) -> None:
    from tests.venvs import make_venv

    python = make_venv(tmp_path / "np124", ["mxnet==1.9.1", "numpy==1.24.4"])
    script = tmp_path / "train.py"
    script.write_text("print('never runs')\n")
    proc = kmx("profile", "--python", str(python), str(script), cwd=tmp_path)
    assert proc.returncode == 1
    assert "never runs" not in proc.stdout
    # mxnet's FutureWarning about np.bool before it fails is noise, not the message
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "module 'numpy' has no attribute 'bool'" in lines[0]
    assert "kmx-tune install-mxnet --python" in lines[0]


MARKUP_SCRIPT = """\
import sys
import mxnet as mx
mx.nd.ones((4, 4)).wait_to_read()
if sys.argv[1] == "raise":
    raise ValueError("bad path [/data/x] [bold]y")
sys.exit("exit text [/data/y]")
"""


@pytest.mark.venv
@pytest.mark.parametrize(("mode", "status"), [("raise", 1), ("exit", 1)])
def test_markup_in_a_script_path_and_its_errors_does_not_crash_kmx_tune(
    mxnet_venv: Path, tmp_path: Path, mode: str, status: int
) -> None:
    """C7: a path with [ and ], an exception or sys.exit text with [/...]: the script's
    status passes through and the text is shown as it is."""
    folder = tmp_path / "a["
    folder.mkdir()
    script = folder / "b].py"
    script.write_text(MARKUP_SCRIPT)
    proc = kmx("profile", "--python", str(mxnet_venv), str(script), mode, cwd=tmp_path)
    assert proc.returncode == status, proc.stderr
    assert "MarkupError" not in proc.stderr
    assert f"Profile of {script}" in proc.stdout
    if mode == "raise":
        assert "(ValueError: bad path [/data/x] [bold]y)." in proc.stdout
    else:
        assert "exit text [/data/y]" in proc.stderr
    assert "Trace: " + str(tmp_path / "b].profile.json") in proc.stdout


FORK_SCRIPT = """\
import os, sys
import mxnet as mx
a = mx.nd.ones((32, 32))
mx.nd.dot(a, a).wait_to_read()
pid = os.fork()
if pid == 0:
    print("child ran", flush=True)
    sys.exit(0)  # back into the runner, as `python script.py` would end the child
_, status = os.waitpid(pid, 0)
print("child status", status, flush=True)
mx.nd.dot(a, a).wait_to_read()
"""


@pytest.mark.venv
def test_a_forked_child_does_not_run_the_profilers_shutdown(
    mxnet_venv: Path, tmp_path: Path
) -> None:
    """B11: the child left through the runner's profiler stop/dump and MXNet aborted."""
    script = tmp_path / "forks.py"
    script.write_text(FORK_SCRIPT)
    proc = kmx("profile", "--python", str(mxnet_venv), "--json", str(script), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "terminate called" not in proc.stderr
    assert proc.stderr.count("child ran") == 1
    assert "child status 0" in proc.stderr
    data = json.loads(proc.stdout)  # the parent's summary, once
    dot = next(op for op in data["operators"] if op["name"] == "dot")
    assert dot["count"] == 2


@pytest.mark.venv
def test_steps_bounds_the_profile_and_the_trace(
    mxnet_venv: Path, conv_script: Path, tmp_path: Path
) -> None:
    proc = kmx(
        "profile",
        "--python",
        str(mxnet_venv),
        "--steps",
        "2",
        "--json",
        str(conv_script),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    conv = next(op for op in data["operators"] if op["name"] == "Convolution")
    assert conv["count"] == 2  # the script runs 3 steps; the 3rd is not profiled
    assert data["steps"] == 2 and data["profiled_steps"] == 2
    assert data["trace_bytes"] == (tmp_path / "train.profile.json").stat().st_size
    text = kmx(
        "profile",
        "--python",
        str(mxnet_venv),
        "--steps",
        "2",
        "--force",
        str(conv_script),
        cwd=tmp_path,
    )
    assert "(mxnet 1.9.1, first 2 steps)" in text.stdout
    assert "KB; open it in chrome://tracing" in text.stdout


KERAS_CNN = """\
import sys
import numpy as np
from keras import backend as K
from keras import layers, models

fmt = sys.argv[1]
K.set_image_data_format(fmt)
shape = (3, 32, 32) if fmt == "channels_first" else (32, 32, 3)
m = models.Sequential()
m.add(layers.Conv2D(32, (3, 3), padding="same", input_shape=shape))
m.add(layers.BatchNormalization())
m.add(layers.Activation("relu"))
m.add(layers.Conv2D(32, (3, 3), padding="same"))
m.add(layers.BatchNormalization())
m.add(layers.Activation("relu"))
m.add(layers.MaxPooling2D())
m.add(layers.Flatten())
m.add(layers.Dense(10, activation="softmax"))
m.compile(loss="categorical_crossentropy", optimizer="adam")
x = np.random.uniform(size=(256,) + shape).astype("float32")
y = np.eye(10, dtype="float32")[np.random.randint(0, 10, size=256)]
m.fit(x, y, batch_size=32, epochs=1, verbose=0)
"""


@pytest.mark.venv
def test_profile_of_keras_training_names_batchnorm_and_knows_channels_first(
    keras_venv: Path, tmp_path: Path
) -> None:
    script = tmp_path / "train.py"
    script.write_text(KERAS_CNN)
    env_home = {"KERAS_BACKEND": "mxnet", "KERAS_HOME": str(tmp_path / "kh")}
    layouts = {}
    for fmt in ("channels_last", "channels_first"):
        proc = subprocess.run(
            [sys.executable, "-m", "kmx_tune", "profile", "--python", str(keras_venv)]
            + ["--steps", "4", "--out", str(tmp_path / f"{fmt}.json"), "--json", str(script), fmt],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            check=False,
            env={**os.environ, **env_home},
        )
        assert proc.returncode == 0, proc.stderr
        layouts[fmt] = json.loads(proc.stdout)
    last = layouts["channels_last"]["layout"]
    assert last["format"] == "channels_last"
    assert last["main_cost"] == "batchnorm"
    assert last["saving"]["batchnorm_share"] > 0
    assert "the main layout cost is BatchNorm over the last axis" in last["advice"]
    assert {(bn["axis"], bn["ndim"]) for bn in last["batchnorm"]} == {(3, 4)}
    first = layouts["channels_first"]["layout"]
    assert first["format"] == "channels_first"
    assert first["advice"].startswith("the model already runs channels_first")
