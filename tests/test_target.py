"""The target-environment probe: run for real in this interpreter and in venvs."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmx_tune.dists import is_mxnet_distribution
from kmx_tune.errors import KmxError, TargetError
from kmx_tune.target import (
    MissingTarget,
    NoTargetError,
    Target,
    resolve_python,
    run_script,
)
from kmx_tune.target.choose import _has_keras_or_mxnet
from tests.venvs import make_venv


@pytest.mark.parametrize(
    "name",
    ["mxnet", "mxnet-mkl", "mxnet-native", "mxnet-cu117", "mxnet-cu90mkl", "MXNet_CU101"],
)
def test_every_flavor_name_is_an_mxnet_distribution(name: str) -> None:
    assert is_mxnet_distribution(name)


@pytest.mark.parametrize("name", ["mxnet-model-server", "gluoncv", "keras-mxnet", "mxnetx"])
def test_other_packages_are_not_mxnet_flavors(name: str) -> None:
    assert not is_mxnet_distribution(name)


def test_the_interpreter_running_kmx_tune_is_a_target_when_named() -> None:
    info = Target.find(sys.executable).facts()
    assert info.python == sys.executable
    assert info.version == tuple(sys.version_info[:3])
    assert info.dist("click") is not None  # kmx-tune's own dependency is seen
    assert info.has_pip


# --------------------------------------------------------- the default target


@pytest.fixture(scope="module")
def other_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real venv that is not kmx-tune's (no pip: only its interpreter matters)."""
    venv = tmp_path_factory.mktemp("other") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


OWN_BIN = str(Path(sys.prefix) / "bin")


def test_the_active_virtual_environment_is_the_default(other_venv: Path) -> None:
    env = {"VIRTUAL_ENV": str(other_venv), "PATH": OWN_BIN}
    target = Target.find(None, env=env)
    assert target.python == str(other_venv / "bin" / "python")
    assert target.chosen_by == "the active virtual environment ($VIRTUAL_ENV)"
    assert Path(target.facts().prefix) == other_venv


def test_a_conda_environment_comes_after_the_virtual_environment(
    other_venv: Path, tmp_path: Path
) -> None:
    conda = tmp_path / "conda-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(conda)], check=True)
    both = Target.find(None, env={"VIRTUAL_ENV": str(other_venv), "CONDA_PREFIX": str(conda)})
    assert both.python == str(other_venv / "bin" / "python")
    only = Target.find(None, env={"CONDA_PREFIX": str(conda), "PATH": OWN_BIN})
    assert only.python == str(conda / "bin" / "python")
    assert only.chosen_by == "the active conda environment ($CONDA_PREFIX)"


def test_without_an_active_environment_the_python_on_path(other_venv: Path) -> None:
    target = Target.find(None, env={"PATH": f"{other_venv / 'bin'}:/usr/bin:/bin"})
    assert target.python == str(other_venv / "bin" / "python")
    assert target.chosen_by == "the `python` on PATH"


def test_kmx_tunes_own_environment_is_passed_over_for_the_next_one(other_venv: Path) -> None:
    """The new user's case: kmx-tune installed into the venv that is active."""
    env = {"VIRTUAL_ENV": sys.prefix, "PATH": f"{other_venv / 'bin'}:{OWN_BIN}"}
    target = Target.find(None, env=env)
    assert target.python == str(other_venv / "bin" / "python")
    assert target.passed_over == (
        f"VIRTUAL_ENV={sys.prefix} is kmx-tune's own environment (no Keras or MXNet in it)",
    )


def test_with_nothing_else_there_is_no_target_and_it_says_what_to_do() -> None:
    target = Target.find(None, env={"VIRTUAL_ENV": sys.prefix, "PATH": OWN_BIN})
    assert isinstance(target, MissingTarget)
    with pytest.raises(NoTargetError) as info:
        target.facts()
    message = str(info.value)
    assert f"VIRTUAL_ENV={sys.prefix} is kmx-tune's own environment" in message
    assert "give --python PATH" in message and "\n" not in message
    with pytest.raises(NoTargetError):
        _ = target.python  # a command that runs the interpreter directly fails the same way
    # named with --python, kmx-tune's own environment is a target like any other
    assert Target.find(sys.executable).facts().prefix == sys.prefix


def test_a_wrapper_on_path_that_runs_kmx_tunes_own_python_is_caught_by_its_facts(
    tmp_path: Path,
) -> None:
    """A pyenv shim is such a wrapper: its folder says nothing; the prefix it reports
    does."""
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python"
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    shim.chmod(0o755)
    target = Target.find(None, env={"PATH": str(shims)})
    assert target.python == str(shim)
    with pytest.raises(NoTargetError, match=r"the `python` on PATH \(.*shims/python\) is kmx"):
        target.facts()


@pytest.mark.parametrize(
    ("names", "training"),
    [
        (["click", "rich", "pip"], False),
        (["click", "Keras"], True),
        (["keras_mxnet"], True),
        (["mxnet-cu117"], True),
        (["mxnet-model-server"], False),
    ],
)
def test_an_environment_with_keras_or_mxnet_counts_as_a_training_environment(
    names: list[str], training: bool
) -> None:
    assert _has_keras_or_mxnet(names) is training


def test_missing_interpreter_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="no such file"):
        resolve_python(tmp_path / "nope" / "python")


def test_a_file_that_is_not_python_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    with pytest.raises(TargetError, match="does not work as a Python"):
        Target.find(fake).facts()


def test_a_venv_folder_resolves_to_its_python(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "v")
    assert resolve_python(tmp_path / "v") == str(python)


@pytest.mark.venv
def test_reads_mxnet_and_numpy_without_importing_them(mxnet_venv: Path) -> None:
    info = Target.find(mxnet_venv).facts()
    assert [(d.name, d.version) for d in info.mxnet_distributions] == [("mxnet", "1.9.1")]
    assert info.numpy_version == "1.23.5"
    assert info.in_venv
    assert info.runtime is None
    assert info.keras.module_path is None


@pytest.mark.venv
def test_deep_mode_imports_mxnet_and_reads_its_features(mxnet_venv: Path) -> None:
    info = Target.find(mxnet_venv).facts(deep=True)
    assert info.runtime is not None
    assert info.runtime.mxnet_import_error is None
    assert info.runtime.mxnet_version == "1.9.1"
    assert info.runtime.features is not None
    assert info.runtime.features["MKLDNN"] is True
    assert info.runtime.features["CUDA"] is False
    assert info.runtime.num_gpus == 0


def test_a_hanging_interpreter_times_out_with_one_line(tmp_path: Path) -> None:
    slow = tmp_path / "python"
    slow.write_text("#!/bin/sh\nsleep 30\n")
    slow.chmod(0o755)
    with pytest.raises(KmxError, match="gave no answer within 1 s"):
        Target(str(slow)).run_json("kmx_env_facts.py", timeout=1)


def test_a_bare_name_in_the_current_folder_is_that_file_not_one_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd venv/bin && kmx-tune doctor --python python` checks venv/bin/python, not the
    `python` that PATH finds (exec looks names without a slash up on PATH)."""
    venv = tmp_path / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    monkeypatch.chdir(venv / "bin")
    info = Target.find("python").facts()
    assert Path(info.prefix) == venv
    monkeypatch.chdir(tmp_path)
    assert Path(Target.find("v").facts().prefix) == venv  # a venv folder named bare


def test_a_script_in_the_current_folder_is_run_not_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "notpython"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TargetError) as info:
        Target.find("notpython").facts()
    assert "No such file" not in str(info.value)
    assert "printed no report" in str(info.value)


def _python2() -> str | None:
    """A working Python 2 interpreter, if this machine has one (pyenv shims may not work)."""
    candidates = [shutil.which("python2.7"), shutil.which("python2")]
    candidates += [str(p) for p in sorted(Path("/root/.pyenv/versions").glob("2.*/bin/python"))]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[0])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.stdout.strip() == "2":
            return candidate
    return None


PYTHON2 = _python2()


@pytest.mark.skipif(PYTHON2 is None, reason="needs a Python 2 interpreter")
def test_python_2_is_named_as_too_old() -> None:
    with pytest.raises(TargetError) as info:
        Target.find(PYTHON2).facts()
    message = str(info.value)
    assert "is Python 2.7" in message and "3.6 or newer" in message
    assert "TypeError" not in message
    # and the next step: a venv made with a Python 3.6-3.9 found on this machine
    assert re.search(r"`\S+python3\.[6-9] -m venv ~/venvs/keras-mxnet`", message), message
    assert "--python ~/venvs/keras-mxnet/bin/python" in message


# ---------------------------------------------------- hostile targets (review C5, B6, B8)


def test_dot_slash_python_is_shown_as_typed_not_doubled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review B8: `--python ./x` was shown as `././x`."""
    script = tmp_path / "x"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert resolve_python("./x") == "./x"
    assert resolve_python("x") == "./x"  # a bare name of a file here: still that file
    with pytest.raises(TargetError) as info:
        Target.find("./x").facts()
    assert str(info.value).startswith("./x: ")


def _fake_python(tmp_path: Path, body: str) -> str:
    fake = tmp_path / "fakepython"
    fake.write_text("#!/bin/sh\n" + body + "\n")
    fake.chmod(0o755)
    return str(fake)


def _facts_line(**over: object) -> str:
    """A facts report as kmx_env_facts.py prints it (from this interpreter), changed."""
    proc = subprocess.run(
        [sys.executable, "kmx_tune/_in_target/kmx_env_facts.py"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    data.update(over)
    return json.dumps(data)


def test_a_target_that_prints_empty_json_is_one_clear_error(tmp_path: Path) -> None:
    """Review C5: `echo "{}"` gave KeyError: 'distributions'."""
    fake = _fake_python(tmp_path, 'echo "{}"')
    with pytest.raises(TargetError) as info:
        Target.find(fake).facts()
    assert "printed no report" in str(info.value)


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"distributions": 5}, "field 'distributions' must be an object, not 5"),
        ({"version": ["a", "b", "c"]}, "field 'version' must be three whole numbers"),
        ({"keras": {"module_path": 3}}, "field 'keras.module_path' must be a string or null"),
        ({"distributions": {"x": {"name": "x", "version": 1}}}, "'distributions[\"x\"].version'"),
        ({"pip_module": "yes"}, "field 'pip_module' must be true or false"),
        ({"deep": {"num_gpus": "two"}}, "field 'deep.num_gpus' must be a whole number or null"),
    ],
)
def test_a_facts_report_of_the_wrong_shape_names_the_field(
    tmp_path: Path, over: dict[str, object], problem: str
) -> None:
    """Review C5: {"distributions": 5} gave AttributeError, non-numeric versions
    ValueError."""
    fake = _fake_python(tmp_path, f"echo {shlex.quote(_facts_line(**over))}")
    with pytest.raises(TargetError) as info:
        Target.find(fake).facts()
    message = str(info.value)
    assert "printed a facts report kmx-tune cannot read" in message
    assert problem in message and "\n" not in message


def test_json_printed_around_the_report_is_not_taken_for_it(tmp_path: Path) -> None:
    """A sitecustomize or atexit logger printing JSON after the report."""
    fake = _fake_python(
        tmp_path,
        f'echo \'{{"log": 1}}\'; {shlex.quote(sys.executable)} "$@"; echo "{{}}"',
    )
    info = Target.find(fake).facts()
    assert info.version == tuple(sys.version_info[:3])


def test_a_target_flooding_stdout_is_stopped_at_the_bound(tmp_path: Path) -> None:
    """Review C5: `exec yes` was captured without a bound (MemoryError, or the OOM
    killer before the 120 s timeout)."""
    fake = _fake_python(tmp_path, "exec yes")
    with pytest.raises(KmxError) as info:
        run_script(fake, "kmx_env_facts.py", output_limit=1 << 20)
    assert "printed more than 1 MiB on stdout and was stopped" in str(info.value)


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for a parent that does not reap (PID 1 in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status


def _wait_dead(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _dead(pid):
            return True
        time.sleep(0.05)
    return _dead(pid)


def test_a_hanging_targets_children_are_killed_at_the_timeout(tmp_path: Path) -> None:
    """Review B6: the timeout killed only the direct child; its `sleep` stayed."""
    pidfile = tmp_path / "grandchild.pid"
    fake = _fake_python(tmp_path, f"sleep 300 & echo $! > {pidfile}; wait")
    with pytest.raises(KmxError, match="gave no answer within 1 s"):
        run_script(fake, "kmx_env_facts.py", timeout=1)
    pid = int(pidfile.read_text())
    assert _wait_dead(pid), f"grandchild {pid} still running"


def test_a_process_left_holding_stdout_does_not_hold_kmx_tune(tmp_path: Path) -> None:
    """Review B6: a target that exits but leaves a daemon holding its stdout made
    kmx-tune wait for the full timeout."""
    pidfile = tmp_path / "daemon.pid"
    fake = _fake_python(tmp_path, f"sleep 300 & echo $! > {pidfile}; echo done")
    started = time.monotonic()
    proc = run_script(fake, "kmx_env_facts.py", timeout=60)
    assert time.monotonic() - started < 30  # not the 60 s timeout
    assert proc.returncode == 0 and proc.stdout.strip() == "done"
    assert _wait_dead(int(pidfile.read_text()))
