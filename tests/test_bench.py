"""`kmx-tune bench`: the statistics, the one-line GPU failures, and real runs with
MXNet 1.9.1 on the CPU through the real command line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kmx_tune.bench import result_from_report, run_bench
from kmx_tune.errors import KmxError
from kmx_tune.target import Target


def _report(first: list[float], last: list[float], batch: int = 8) -> dict[str, Any]:
    return {
        "mxnet_version": "1.9.1",
        "ctx": "cpu",
        "batch": batch,
        "image": [32, 32, 3],
        "channels": [32, 64, 64],
        "warmup": 3,
        "repeats": len(first),
        "cpu_count": 2,
        "omp_num_threads": None,
        "times": {"channels_first": first, "channels_last": last},
        "error": None,
    }


def test_images_per_second_and_the_ratio_come_from_paired_repeats() -> None:
    # channels_last takes 1.25x as long in every repeat, while the machine slows down
    first = [0.10, 0.10, 0.20, 0.20, 0.40]
    last = [t * 1.25 for t in first]
    result = result_from_report("python", _report(first, last))
    cf, cl = result.form("channels_first"), result.form("channels_last")
    assert cf.images_per_s == pytest.approx(8 / 0.2)
    assert (cf.min, cf.max) == (pytest.approx(8 / 0.4), pytest.approx(8 / 0.1))
    assert cl.images_per_s == pytest.approx(8 / 0.25)
    # the paired ratio has no spread although each form's images/s has a lot
    assert (result.ratio_q1, result.ratio, result.ratio_q3) == (
        pytest.approx(1.25),
        pytest.approx(1.25),
        pytest.approx(1.25),
    )
    assert result.verdict.startswith("channels_first is 1.25x as fast as channels_last")
    data = result.to_json()
    assert set(data["forms"]) == {"channels_first", "channels_last"}
    assert data["ratio"]["median"] == pytest.approx(1.25)


def test_a_ratio_whose_spread_spans_one_is_no_clear_difference() -> None:
    first = [0.10, 0.10, 0.10, 0.10]
    last = [0.09, 0.11, 0.095, 0.105]
    assert result_from_report("python", _report(first, last)).verdict.startswith(
        "no clear difference"
    )


GPU_ERROR = (
    "MXNetError: Traceback (most recent call last):\n"
    '  File "../src/operator/nn/./cudnn/cudnn_convolution-inl.h", line 90\n'
    "MXNetError: Check failed: e == cudaSuccess: CUDA: no kernel image is available for "
    "execution on the device"
)


def test_a_gpu_the_wheel_has_no_kernels_for_is_one_line() -> None:
    report = _report([], [])
    report.update(ctx="gpu", times=None, error={"kind": "failed", "message": GPU_ERROR})
    with pytest.raises(KmxError) as info:
        result_from_report("python", report)
    message = str(info.value)
    assert "\n" not in message
    assert "no kernels for this GPU's architecture" in message
    assert "--ctx cpu" in message


@pytest.fixture
def aborting_python(tmp_path: Path) -> Path:
    """The hardware seam: a target whose CUDA MXNet dies on an H100, as a CUDA
    error in MXNet's engine thread aborts the process before any report."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\n"
        "echo '[12:00:00] src/engine/threaded_engine.cc:331: Check failed: "
        "e == cudaSuccess: CUDA: no kernel image is available for execution on the device' >&2\n"
        "echo \"terminate called after throwing an instance of 'dmlc::Error'\" >&2\n"
        "exit 134\n"
    )
    fake.chmod(0o755)
    return fake


def test_an_aborted_gpu_run_is_explained_not_crashed(aborting_python: Path) -> None:
    with pytest.raises(KmxError, match="no kernels for this GPU's architecture"):
        run_bench(Target(str(aborting_python)), ctx="gpu")
    proc = kmx("bench", "--python", str(aborting_python), "--ctx", "gpu")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--ctx cpu" in errors[0]


def kmx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )


@pytest.mark.skipif(
    importlib.util.find_spec("mxnet") is not None, reason="this interpreter has mxnet"
)
def test_a_target_without_mxnet_points_at_install_mxnet() -> None:
    proc = kmx("bench", "--python", sys.executable)
    assert proc.returncode == 1
    assert "Error: mxnet cannot be imported" in proc.stderr
    assert "kmx-tune install-mxnet" in proc.stderr and "kmx-tune doctor" in proc.stderr


@pytest.mark.venv
def test_bench_prints_both_forms_and_the_ratio(mxnet_venv: Path) -> None:
    proc = kmx("bench", "--python", str(mxnet_venv), "--batch", "4", "--repeats", "3")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mxnet 1.9.1 on cpu" in out
    assert "channels_first (NCHW)" in out
    assert "channels_last (transpose+conv+transpose)" in out
    assert "IQR" in out
    assert any(word in out for word in ("as fast as", "no clear difference"))


@pytest.mark.venv
def test_bench_json_has_both_forms(mxnet_venv: Path) -> None:
    proc = kmx("bench", "--python", str(mxnet_venv), "--batch", "2", "--repeats", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["batch"] == 2 and data["repeats"] == 2 and data["ctx"] == "cpu"
    for form in ("channels_first", "channels_last"):
        stats = data["forms"][form]
        assert stats["images_per_s"] > 0
        assert stats["iqr"][0] <= stats["images_per_s"] <= stats["iqr"][1]
    assert data["ratio"]["median"] > 0


@pytest.mark.venv
def test_gpu_on_a_cpu_build_is_one_line(mxnet_venv: Path) -> None:
    proc = kmx("bench", "--python", str(mxnet_venv), "--ctx", "gpu")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "Error: --ctx gpu: the mxnet 1.9.1 in" in proc.stderr
    assert "CPU-only build" in proc.stderr


@pytest.mark.parametrize(
    "message",
    [
        "MXNetError: Failed to allocate CPU Memory",
        "MemoryError: ",
        "OverflowError: Python int too large to convert to C unsigned long",
    ],
)
def test_a_batch_too_big_for_memory_says_to_lower_batch(message: str) -> None:
    report = _report([], [], batch=100000)
    report.update(times=None, error={"kind": "failed", "message": message})
    with pytest.raises(KmxError) as info:
        result_from_report("python", report)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("--batch 100000: ")
    assert "smaller --batch" in text
    assert "doctor" not in text


# How the OS ends a target that asked for too much memory, as the target sees it: the
# OOM killer's SIGKILL (no report, no stderr), or C++'s bad_alloc aborting MXNet.
OOM_ENDINGS = {
    "oom_killer": "kill -9 $$\n",
    "bad_alloc": "echo \"terminate called after throwing an instance of 'std::bad_alloc'\" >&2\n"
    "echo '  what():  std::bad_alloc' >&2\nexit 134\n",
}


@pytest.mark.parametrize("ending", sorted(OOM_ENDINGS))
def test_a_run_ended_for_lack_of_memory_says_to_lower_batch(tmp_path: Path, ending: str) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n" + OOM_ENDINGS[ending])
    fake.chmod(0o755)
    proc = kmx("bench", "--python", str(fake), "--batch", "4096")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: --batch 4096: ") and "smaller --batch" in errors[0]


@pytest.mark.venv
def test_a_huge_batch_is_one_line_about_memory(mxnet_venv: Path) -> None:
    import resource

    def limit_memory() -> None:  # 6 GiB of address space: mxnet's allocation fails
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))

    proc = subprocess.run(
        [sys.executable, "-m", "kmx_tune", "bench", "--python", str(mxnet_venv)]
        + ["--batch", "1000000", "--repeats", "1"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        preexec_fn=limit_memory,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("Error: --batch 1000000: ") and "smaller --batch" in errors[0]
