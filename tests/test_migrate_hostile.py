"""migrate under attack: the adversarial review's findings D6 (an edit saved while
kmx-tune works), S3 (symlinks out of a folder), C1 (deep expressions that crash the
parser), C2 (huge files), B1 (FIFOs) and S2/S4 (what reaches the terminal). Each test
builds the real file the review built."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kmx_tune.migrate import MAX_SOURCE_BYTES, migrate_paths, write_reports
from kmx_tune.migrate.files import check_paths
from tests.cli import kmx

MODEL = "from keras.layers import Input\nx = Input(shape=(28, 28, 1))\n"
MODEL_FIRST = "from keras.layers import Input\nx = Input(shape=(1, 28, 28))\n"


def _limit_memory() -> None:
    # a run that would take the machine's memory fails in its own process instead
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def migrate_process(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A real `kmx-tune migrate` process: a crash (SIGSEGV), a hang or a memory blow-up
    must happen there, never in the test runner."""
    return subprocess.run(
        [sys.executable, "-m", "kmx_tune", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limit_memory,
    )


def _findings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line]


# ---------------------------------------------------------------- D6: edits made meanwhile


def test_a_file_changed_after_it_was_read_is_not_written(tmp_path: Path) -> None:
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text(MODEL)
    b.write_text(MODEL)
    checked = check_paths([tmp_path], "channels_first")
    edited = MODEL + "# IMPORTANT EDIT\n"
    a.write_text(edited)  # saved in an editor while kmx-tune was busy with b.py
    result = write_reports(checked)
    assert a.read_text() == edited  # the edit is kept
    assert b.read_text() == MODEL_FIRST  # the others are still written
    (report_a, report_b) = result.files
    assert not report_a.written and report_a.not_written is not None
    assert "changed after kmx-tune read it" in report_a.not_written
    assert report_b.written
    assert result.exit_code == 1 and result.fixed_count == 1
    assert result.to_json()["not_written"] == [{"file": str(a), "reason": report_a.not_written}]


def test_a_file_removed_meanwhile_is_not_recreated(tmp_path: Path) -> None:
    a = tmp_path / "a.py"
    a.write_text(MODEL)
    checked = check_paths([a], "channels_first")
    a.unlink()
    result = write_reports(checked)
    assert not a.exists() and result.files[0].not_written is not None


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_an_edit_saved_during_a_real_run_is_kept(tmp_path: Path) -> None:
    """The review's repro: `migrate --write .` over a.py and a file slow to analyse; a.py
    is edited while the slow one is analysed (its child process is seen running)."""
    a = tmp_path / "a.py"
    a.write_text(MODEL)
    # ~3,000 chained terms: CPython compiles it, libcst takes seconds
    (tmp_path / "z_slow.py").write_text("x = " + "+".join(["1"] * 2900) + "\n")
    run = subprocess.Popen(
        [sys.executable, "-m", "kmx_tune", "migrate", "--write", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_memory,
    )
    try:
        seen: dict[int, float] = {}
        while run.poll() is None:  # wait for one analysis child to live for a second
            now = time.monotonic()
            for child in _children(run.pid):
                seen.setdefault(child, now)
            if any(now - t > 1.0 for c, t in seen.items() if c in _children(run.pid)):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run ended before the slow file's analysis was seen")
        edited = MODEL + "# IMPORTANT EDIT\n"
        a.write_text(edited)
        out, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 1
    assert a.read_text() == edited
    assert f"Not written: {a} changed after kmx-tune read it" in err


# ---------------------------------------------------------------- S3: links out of DIR


def test_write_dir_never_follows_a_py_symlink_out_of_dir(tmp_path: Path) -> None:
    project, outside = tmp_path / "proj", tmp_path / "outside"
    (project / "sub").mkdir(parents=True)
    outside.mkdir()
    victim = outside / "victim.py"
    victim.write_text(MODEL)
    (project / "sub" / "link.py").symlink_to("../../outside/victim.py")
    (project / "inside.py").write_text(MODEL)
    (project / "alias.py").symlink_to("inside.py")  # a link inside the folder is fine
    result = kmx("migrate", "--write", str(project))
    assert victim.read_text() == MODEL
    assert (project / "inside.py").read_text() == MODEL_FIRST
    assert f"Skipped {project / 'sub' / 'link.py'}: a symlink to {victim}, outside {project}" in (
        result.stderr
    )
    data = json.loads(kmx("migrate", "--json", str(project)).stdout)
    assert data["skipped"] == [
        {"file": str(project / "sub" / "link.py"), "reason": f"a symlink to {victim}, outside "
         f"{project} (a folder is checked without following links out of it; name the file "
         "to check it)"}
    ]  # fmt: skip


def test_a_symlink_named_on_the_command_line_is_followed(tmp_path: Path) -> None:
    target = tmp_path / "real.py"
    target.write_text(MODEL)
    link = tmp_path / "sub" / "link.py"
    link.parent.mkdir()
    link.symlink_to(target)
    assert kmx("migrate", "--write", str(link)).exit_code == 0
    assert link.is_symlink() and target.read_text() == MODEL_FIRST


# ---------------------------------------------------------------- C1: deep expressions

DEEP_FILES = {
    "concat-350": "s = " + " + ".join(['"ab"'] * 350) + "\n",  # valid: CPython compiles it
    "plus-500": "x = " + " + ".join(["1"] * 500) + "\n",
    "brackets-500": "x = " + "[" * 500 + "]" * 500 + "\n",
    "plus-10000": "x = " + "+".join(["1"] * 10_000) + "\n",  # these crashed the process
    "parens-2000": "x = " + "(" * 2000 + "1" + ")" * 2000 + "\n",
    "brackets-3000": "x = " + "[" * 3000 + "]" * 3000 + "\n",
}


def test_deep_expressions_never_crash_and_other_files_are_still_checked(tmp_path: Path) -> None:
    for name, text in DEEP_FILES.items():
        (tmp_path / f"{name}.py").write_text(text)
    (tmp_path / "model.py").write_text(MODEL)
    done = migrate_process("--write", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Fatal" not in done.stderr
    assert (tmp_path / "model.py").read_text() == MODEL_FIRST
    lines = _findings(done.stdout)
    for name, text in DEEP_FILES.items():
        path = tmp_path / f"{name}.py"
        assert path.read_text() == text  # never rewritten
        mine = [line for line in lines if line.startswith(f"{path}:")]
        if name in ("concat-350", "plus-500"):  # CPython compiles these: analysed
            assert mine == []
        else:  # beyond what CPython compiles
            assert len(mine) == 1 and " E999 " in mine[0] and "too deep" in mine[0], mine


def test_too_deep_for_the_analysis_is_said_as_such(tmp_path: Path) -> None:
    path = tmp_path / "deep.py"
    path.write_text(DEEP_FILES["plus-10000"])
    done = migrate_process(str(path))
    assert done.returncode == 1
    (line,) = _findings(done.stdout)
    assert line.startswith(f"{path}:1:1: E999 ") and "too deep" in line


def test_valid_long_expressions_are_analysed_not_refused(tmp_path: Path) -> None:
    # CPython compiles a 350-term concatenation; so must the analysis (no false E999)
    path = tmp_path / "long.py"
    path.write_text(DEEP_FILES["concat-350"] + MODEL)
    result = migrate_paths([path])
    assert [f.code for f in result.findings] == ["KMX102"]


# ---------------------------------------------------------------- C2: huge files


def test_a_file_over_the_size_bound_is_one_finding_and_the_rest_is_checked(
    tmp_path: Path,
) -> None:
    big = tmp_path / "big.py"
    line = "x = Input(shape=(28, 28, 1))\n"
    big.write_text(line * (MAX_SOURCE_BYTES // len(line) + 1))
    (tmp_path / "model.py").write_text(MODEL)
    done = migrate_process("--write", str(tmp_path), timeout=60)
    assert done.returncode == 1, done.stderr
    (found,) = [x for x in _findings(done.stdout) if x.startswith(f"{big}:")]
    assert " E901 " in found and "larger than the 256 KiB" in found
    assert (tmp_path / "model.py").read_text() == MODEL_FIRST
    assert big.read_text().startswith(line)


def test_a_file_just_under_the_bound_is_analysed(tmp_path: Path) -> None:
    path = tmp_path / "under.py"
    # a long docstring: at the size bound, but quick to analyse
    path.write_text('"""' + "x" * (MAX_SOURCE_BYTES - 100) + '"""\n' + MODEL)
    assert MAX_SOURCE_BYTES - 100 < path.stat().st_size <= MAX_SOURCE_BYTES
    assert [f.code for f in migrate_paths([path]).findings] == ["KMX102"]


# ---------------------------------------------------------------- B1: FIFOs and devices


def test_a_fifo_named_on_the_command_line_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.py"
    os.mkfifo(fifo)
    done = migrate_process(str(fifo), timeout=30)
    assert done.returncode == 1
    assert _findings(done.stdout) == [
        f"{fifo}:1:1: E902 could not read: a FIFO (named pipe), not a regular file"
    ]


def test_dev_zero_named_on_the_command_line_is_not_read(tmp_path: Path) -> None:
    link = tmp_path / "zero.py"
    link.symlink_to("/dev/zero")
    done = migrate_process(str(link), timeout=30)
    assert done.returncode == 1
    assert "E902 could not read: a character device, not a regular file" in done.stdout


# ---------------------------------------------------------------- S2/S4: text, not markup


def test_markup_and_escapes_in_names_and_code_are_printed_as_text(tmp_path: Path) -> None:
    path = tmp_path / "[red]m[x].py"
    path.write_text(
        "from keras.layers import Conv2D\nx = x.reshape(len('\x1b]0;PWNED\x07'), 28, 28, 1)\n"
    )
    result = kmx("migrate", str(path))
    assert result.exit_code == 1
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert f"{path}:2:5: KMX401 x.reshape(len('\\x1b]0;PWNED\\x07'), 28, 28, 1)" in result.stdout


def test_the_diff_is_escaped_on_a_terminal_and_exact_in_a_pipe(tmp_path: Path) -> None:
    from kmx_tune.commands.migrate import diff_text

    path = tmp_path / "m.py"
    path.write_text(MODEL + "s = '\x1b[2J'\n")
    (report,) = migrate_paths([path]).files
    assert "\x1b" not in diff_text(report, terminal=True)
    assert "\\x1b[2J" in diff_text(report, terminal=True)
    assert diff_text(report, terminal=False) == report.diff()  # a patch that applies
