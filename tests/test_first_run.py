"""A new user's path through doctor (issue 15): the default target and what the first
run says, the keras-mxnet venv route that works here, `doctor --fix`, and the old pip
on Python 3.6. Real interpreters, real venvs and real keras.json files throughout."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kmx_tune.doctor.envfile import snippet_text
from tests.cli import kmx
from tests.hwfakes import profile_path
from tests.venvs import pip_freeze, pip_install, pyenv_python

NO_GPU = str(profile_path("epyc-no-gpu"))
KERAS_JSON = Path(__file__).parent / "fixtures" / "keras-json"
OWN_BIN = str(Path(sys.prefix) / "bin")
# kmx-tune installed into the active venv, nothing else there: the README's first run
FRESH = {"VIRTUAL_ENV": sys.prefix, "PATH": f"{OWN_BIN}:/usr/bin:/bin"}


def _version(python: str) -> tuple[int, int]:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return int(out[0]), int(out[1])


# -------------------------------------------------------------- which target


def test_the_first_run_on_a_fresh_machine_says_how_to_start() -> None:
    """`pip install . && kmx-tune doctor` in a new venv: no environment to check, and a
    command that makes one with a Python this machine has (issue 15 items 1 and 6)."""
    result = kmx("doctor", "--hardware", NO_GPU, env=FRESH)
    out = result.output
    lines = out.splitlines()
    assert lines[0] == "kmx-tune doctor: no Python environment to check"
    assert "recommended MXNet: mxnet==1.9.1 numpy<1.24" in out
    assert "! environment: no Keras-MXNet environment found: make one with Python 3.6-3.9" in out
    assert f"looked at: VIRTUAL_ENV={sys.prefix} is kmx-tune's own environment" in out
    assert "install-mxnet" not in out  # nothing says "install mxnet here"
    assert result.exit_code == 0  # nothing is broken: there is nothing to check yet
    fix = next(line.strip()[len("fix: ") :] for line in lines if "-m venv" in line)
    first = shlex.split(fix.split(" && ")[0])
    assert first[1:] == ["-m", "venv", "~/venvs/keras-mxnet"]
    assert (3, 6) <= _version(first[0]) <= (3, 9)  # a real interpreter, not a guessed name
    assert fix.endswith("&& kmx-tune doctor --python ~/venvs/keras-mxnet/bin/python")


def test_the_first_line_names_the_active_environment_and_why(tmp_path: Path) -> None:
    venv = tmp_path / "train"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {"VIRTUAL_ENV": str(venv), "PATH": f"{OWN_BIN}:/usr/bin:/bin"}
    result = kmx("doctor", "--hardware", NO_GPU, env=env)
    first = result.output.splitlines()[0]
    assert first == (
        f"kmx-tune doctor: {venv}/bin/python (Python {sys.version.split()[0]}): "
        "the active virtual environment ($VIRTUAL_ENV)"
    )
    data = json.loads(kmx("doctor", "--hardware", NO_GPU, "--json", env=env).stdout)
    assert data["python"] == f"{venv}/bin/python"
    assert data["chosen_by"] == "the active virtual environment ($VIRTUAL_ENV)"


def test_other_commands_name_a_default_target_on_stderr(tmp_path: Path) -> None:
    venv = tmp_path / "train"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {"VIRTUAL_ENV": str(venv), "PATH": OWN_BIN}
    result = kmx("install-mxnet", "--dry-run", "--hardware", str(tmp_path), env=env)
    assert result.stderr.startswith(
        f"Python environment: {venv}/bin/python (the active virtual environment ($VIRTUAL_ENV); "
        "--python names another)"
    )
    # with no target at all, the command's own argument errors still come first
    script = tmp_path / "missing.py"
    result = kmx("profile", str(script), env=FRESH)
    assert result.exit_code == 2 and "missing.py: no such file" in result.stderr


def test_on_python_312_the_route_is_printed_once(tmp_path: Path) -> None:
    """Issue 15 item 6: the venv fix was printed twice on 3.12 (under mxnet and keras)."""
    py312 = pyenv_python("3.12")
    result = kmx("doctor", "--python", str(py312), "--hardware", NO_GPU)
    out = result.output
    assert out.count("-m venv ~/venvs/keras-mxnet") == 1
    assert out.count("fix: the same as for python above") == 2
    data = json.loads(kmx("doctor", "--python", str(py312), "--hardware", NO_GPU, "--json").stdout)
    fixes = {f["id"]: f["fix"] for f in data["findings"]}
    assert fixes["python"] == fixes["mxnet"] == fixes["keras"]  # JSON keeps each fix whole


# ------------------------------------------------------------------ doctor --fix


def _home_with_keras_json(tmp_path: Path) -> Path:
    home = Path(os.environ["HOME"])
    (home / ".keras").mkdir(parents=True, exist_ok=True)
    src = KERAS_JSON / "keras-mxnet-2.2.4.3-first-import.json"
    (home / ".keras" / "keras.json").write_bytes(src.read_bytes())  # channels_last
    return home


def test_fix_without_yes_and_without_a_terminal_changes_nothing(tmp_path: Path) -> None:
    home = _home_with_keras_json(tmp_path)
    before = (home / ".keras" / "keras.json").read_bytes()
    result = kmx("doctor", "--fix", "--hardware", NO_GPU, env=FRESH)
    assert result.exit_code == 2
    assert (
        "Fixes to apply:" in result.stdout and "kmx-tune set-format channels_first" in result.stdout
    )
    assert result.stderr.strip() == (
        "Error: nothing changed: add --yes to apply the fixes without a question "
        "(doctor --fix --yes)"
    )
    assert (home / ".keras" / "keras.json").read_bytes() == before
    assert not (home / ".config" / "kmx-tune" / "env.sh").exists()


def test_fix_answered_no_on_a_terminal_changes_nothing(tmp_path: Path) -> None:
    import pty

    home = _home_with_keras_json(tmp_path)
    before = (home / ".keras" / "keras.json").read_bytes()
    master, slave = pty.openpty()
    try:
        os.write(master, b"n\n")
        proc = subprocess.run(
            [sys.executable, "-m", "kmx_tune", "doctor", "--fix", "--hardware", NO_GPU],
            stdin=slave,
            capture_output=True,
            text=True,
            env={**os.environ, **FRESH},
            timeout=120,
            check=False,
        )
    finally:
        os.close(master)
        os.close(slave)
    assert "Apply 2 fixes? [y/N]" in proc.stderr
    assert "Nothing changed." in proc.stderr
    assert (home / ".keras" / "keras.json").read_bytes() == before
    assert not (home / ".config" / "kmx-tune" / "env.sh").exists()


def test_fix_yes_sets_the_format_writes_the_variables_and_checks_again(tmp_path: Path) -> None:
    home = _home_with_keras_json(tmp_path)
    result = kmx("doctor", "--fix", "--yes", "--hardware", NO_GPU, env=FRESH)
    out = result.stdout
    assert result.exit_code == 0, result.output
    settings = json.loads((home / ".keras" / "keras.json").read_text())
    assert settings["image_data_format"] == "channels_first"
    assert (home / ".keras" / "keras.json.bak").is_file()
    env_file = home / ".config" / "kmx-tune" / "env.sh"
    cores = re.search(r"fix: export OMP_NUM_THREADS=(\d+)", out)
    assert cores is not None
    assert f"export OMP_NUM_THREADS={cores.group(1)}" in env_file.read_text().splitlines()
    assert f"load it in your shell (and in job scripts): . {env_file}" in out
    after = out[out.index("Checked again") :]
    assert f"with the variables of {env_file} set" in after
    assert "✓ keras.image_data_format: image_data_format is channels_first" in after
    assert "✓ env.OMP_NUM_THREADS" in after
    # what cannot be applied is left to the user, with why
    assert "Left to you:" in out and "makes a new environment: run it yourself" in out
    # sourcing the file gives a shell the variable
    shell = subprocess.run(
        ["sh", "-c", f". {shlex.quote(str(env_file))} && echo $OMP_NUM_THREADS"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.strip() == cores.group(1)


def test_fix_json_carries_both_reports_and_what_was_applied(tmp_path: Path) -> None:
    _home_with_keras_json(tmp_path)
    result = kmx("doctor", "--fix", "--yes", "--json", "--hardware", NO_GPU, env=FRESH)
    data = json.loads(result.stdout)
    assert data["schema"] == "kmx-tune/doctor-fix/1"
    assert data["exit_code"] == result.exit_code == 0
    assert [a["kind"] for a in data["applied"]] == ["set-format", "env"]
    assert all(a["ok"] for a in data["applied"])
    assert data["before"]["summary"]["warn"] > data["after"]["summary"]["warn"]
    assert data["env_file"].endswith("/.config/kmx-tune/env.sh")


def test_yes_and_env_file_need_fix() -> None:
    result = kmx("doctor", "--yes", env=FRESH)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --yes and --env-file go with --fix; add --fix to apply the fixes"
    )


def test_the_variables_file_keeps_what_it_had_and_updates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "env.sh"
    old = "# mine\nexport OMP_NUM_THREADS=8\nexport MY_VAR=1\n"
    text = snippet_text(
        old, [("export", "OMP_NUM_THREADS", "2"), ("unset", "MXNET_SUBGRAPH_BACKEND")], path
    )
    assert text == (
        "# mine\nexport OMP_NUM_THREADS=2\nexport MY_VAR=1\nunset MXNET_SUBGRAPH_BACKEND\n"
    )
    fresh = snippet_text("", [("export", "KMP_AFFINITY", "granularity=fine,compact,1,0")], path)
    assert fresh.splitlines()[-1] == "export KMP_AFFINITY=granularity=fine,compact,1,0"
    assert f". {path}" in fresh


# --------------------------------------------------- real environments (slow tier)


@pytest.mark.venv
def test_the_route_printed_on_a_fresh_machine_works_as_printed(tmp_path: Path) -> None:
    """No dead ends: run the fix doctor printed (making ~/venvs/keras-mxnet with the
    Python it found, installing keras-mxnet and the recommended MXNet), then doctor
    on the new venv finds nothing failing."""
    result = kmx("doctor", "--hardware", NO_GPU, env=FRESH)
    fix = next(
        line.strip()[len("fix: ") :] for line in result.output.splitlines() if "-m venv" in line
    )
    home = os.environ["HOME"]
    parts = [
        [word.replace("~", home, 1) if word.startswith("~/") else word for word in shlex.split(p)]
        for p in fix.split(" && ")
    ]
    assert parts[-1][:3] == ["kmx-tune", "doctor", "--python"]
    for words in parts[:-1]:
        subprocess.run(words, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    check = kmx(*parts[-1][1:], "--hardware", NO_GPU, "--json", env={"OMP_NUM_THREADS": "2"})
    data = json.loads(check.stdout)
    status = {f["id"]: f["status"] for f in data["findings"]}
    assert data["summary"]["fail"] == 0, data["findings"]
    assert status["mxnet"] == status["numpy"] == status["keras"] == "ok"


@pytest.mark.venv
def test_fix_makes_the_new_users_keras_mxnet_venv_work(tmp_path: Path) -> None:
    """The new-user report's venv: keras-mxnet 2.2.4.3 on Python 3.8 pulled numpy
    1.24.4 and no mxnet. doctor --fix --yes installs MXNet through install-mxnet's own
    workflow (verified, pinned numpy), sets the format, writes the variables."""
    py38 = pyenv_python("3.8")
    venv = tmp_path / "kvenv"
    subprocess.run([str(py38), "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip_install(python, ["keras-mxnet==2.2.4.3"])
    assert pip_freeze(python)["numpy"] == "1.24.4"
    _home_with_keras_json(tmp_path)
    result = kmx("doctor", "--python", str(python), "--fix", "--yes", "--hardware", NO_GPU)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"✓ kmx-tune install-mxnet --python {python} --hardware {NO_GPU}: installed" in out
    after = out[out.index("Checked again") :]
    assert "0 failed, 0 warnings" in after
    installed = pip_freeze(python)
    assert installed["mxnet"] == "1.9.1" and installed["numpy"] == "1.23.5"


@pytest.mark.venv
def test_python_36_with_pip_181_is_flagged_and_fixed_before_mxnet(tmp_path: Path) -> None:
    """Issue 15 item 6: on Python 3.6 with pip 18.1 doctor said "✓ python" and
    install-mxnet refused the old pip. Now doctor flags it with the upgrade that works
    there, and --fix applies it before installing MXNet."""
    py36 = pyenv_python("3.6")
    subprocess.run([str(py36), "-m", "venv", str(tmp_path / "py36")], check=True)
    python = tmp_path / "py36" / "bin" / "python"
    assert pip_freeze(python)["pip"] == "18.1"
    args = ["doctor", "--python", str(python), "--hardware", NO_GPU]
    first = json.loads(kmx(*args, "--json").stdout)
    pip = next(f for f in first["findings"] if f["id"] == "python")
    assert pip["status"] == "warn" and "pip 18.1 cannot install MXNet" in pip["title"]
    assert pip["fix"] == f"{python} -m pip install --upgrade 'pip<22'"
    result = kmx(*args, "--fix", "--yes")
    assert result.exit_code == 0, result.output
    out = result.stdout
    applied = out[out.index("Applied:") :]
    assert applied.index("install --upgrade 'pip<22': done") < applied.index("install-mxnet")
    installed = pip_freeze(python)
    assert installed["pip"].startswith("21.") and installed["mxnet"] == "1.9.1"
    after = out[out.index("Checked again") :]
    assert "✓ python: Python 3.6 with pip 21." in after and "✓ mxnet:" in after
