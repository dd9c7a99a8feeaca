"""Running kmx-tune's stdlib-only scripts (``kmx_tune/_in_target/``) inside a target
interpreter, and reading the JSON report each prints.

A target is untrusted in what it prints and in how it behaves: it runs in a process
group of its own, its output is read with a bound, and whatever is left of the group
when the call ends (a hang past the timeout, a flood, a daemon holding the pipes) is
killed. Its report is the last line carrying a kmx-tune schema, so JSON printed by a
sitecustomize or an atexit hook is not taken for it."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kmx_tune.errors import KmxError, TargetError

IN_TARGET_DIR = Path(__file__).resolve().parent.parent / "_in_target"

OUTPUT_LIMIT = 16 * 1024 * 1024  # bytes a target may print on each stream
_EXIT_GRACE_S = 1.0  # after the target exits, how long its leftovers may hold the pipes
_POLL_S = 0.25  # while it runs, how often to look whether the target has exited


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """End the target and everything it started (its own process group)."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc.wait(timeout=5)


class _Stop(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


def _collect(proc: subprocess.Popen[bytes], timeout: float, limit: int) -> tuple[str, str]:
    """Read *proc*'s stdout and stderr until both close, or until the target has exited
    and a process it left behind has held them for a moment longer. One thread, one
    selector, as ``communicate`` does, with a bound: raises _Stop("timeout"), or
    _Stop("stdout"/"stderr") past *limit* bytes."""
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
    data: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    deadline = time.monotonic() + timeout
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for fd in streams:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                raise _Stop("timeout")
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at >= _EXIT_GRACE_S:
                break  # a process the target left behind holds the pipes
            # wake up now and then while the target runs, to notice that it has exited
            wait = min(deadline - now, _POLL_S)
            if exited_at is not None:
                wait = min(wait, exited_at + _EXIT_GRACE_S - now)
            for key, _ in selector.select(max(wait, 0.0)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fd)
                    continue
                name = streams[key.fd]
                data[name] += chunk
                if len(data[name]) > limit:
                    raise _Stop(name)
    return (
        data["stdout"].decode("utf-8", errors="replace"),
        data["stderr"].decode("utf-8", errors="replace"),
    )


def run_script(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    timeout_message: str | None = None,
    output_limit: int = OUTPUT_LIMIT,
) -> subprocess.CompletedProcess[str]:
    """Run ``kmx_tune/_in_target/<script>`` in *python*, capturing its output.

    The target runs in a process group of its own, and whatever is left of that group
    when the call ends (a hang past *timeout*, a flood past *output_limit* bytes, a
    process it left behind holding the pipes) is killed. Raises TargetError when the
    interpreter cannot be started, and KmxError with *timeout_message* (or a generic
    one) when it runs past *timeout* seconds or prints too much."""
    cmd = [python, str(IN_TARGET_DIR / script), *args]
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("PYTHONIOENCODING", "utf-8")
    try:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=run_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise TargetError(
            f"{python}: cannot run it ({exc.strerror or exc}); give the path of a Python 3.6+ "
            "interpreter with --python"
        ) from None
    try:
        try:
            out, err = _collect(proc, timeout, output_limit)
        finally:
            _kill_group(proc)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    except _Stop as stop:
        if stop.why == "timeout":
            raise KmxError(
                timeout_message
                or f"{python}: gave no answer within {timeout:.0f} s; check that it starts "
                f"(`{python} -c 'print(1)'`), or give another interpreter with --python"
            ) from None
        raise KmxError(
            f"{python}: printed more than {output_limit // (1024 * 1024)} MiB on {stop.why} "
            "and was stopped; check what its site-packages or PYTHONSTARTUP print, or give "
            "another interpreter with --python"
        ) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def failure_tail(proc: subprocess.CompletedProcess[str]) -> str:
    """The last line a failed target process wrote, for a one-line error."""
    if "SyntaxError" in proc.stderr:
        return "it is older than Python 3.6, which kmx-tune needs"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else f"exit status {proc.returncode}"


def _report(stdout: str, schema: str | None) -> dict[str, Any] | None:
    """The last line of *stdout* that is kmx-tune's JSON report (with *schema*, or any
    "kmx-tune/..." one): a JSON line printed by something else (a sitecustomize, an
    atexit logger) is not mistaken for it."""
    for line in reversed(stdout.splitlines()):
        if not line.startswith("{"):
            continue
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        found = data.get("schema")
        if found == schema or (schema is None and str(found).startswith("kmx-tune/")):
            return data
    return None


def _too_old_next_step(why: str) -> str:
    """For a Python older than 3.6: the interpreter to make a Keras-MXNet venv with."""
    if "kmx-tune needs Python 3.6" not in why and "older than Python 3.6" not in why:
        return ""
    from kmx_tune.interpreters import VENV, find_keras_python

    found = find_keras_python()
    if found is None:
        return (
            "; keras-mxnet needs Python 3.6-3.9: install one, make a venv with it and give "
            f"--python {VENV}/bin/python"
        )
    return (
        f"; for keras-mxnet make a venv with Python {found.version_str} ({found.source}): "
        f"`{shlex.quote(found.path)} -m venv {VENV}`, then give --python {VENV}/bin/python"
    )


def run_in_target(
    python: str,
    script: str,
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    schema: str | None = None,
) -> dict[str, Any]:
    """Run ``kmx_tune/_in_target/<script>`` in *python* and return the JSON report it
    prints (the line with *schema*, or any kmx-tune schema). Raises TargetError when
    the interpreter cannot run it."""
    proc = run_script(python, script, args, env=env, timeout=timeout)
    data = _report(proc.stdout, schema)
    if proc.returncode != 0 or data is None:
        why = (
            failure_tail(proc)
            if proc.returncode or proc.stderr.strip()
            else "it ran but printed no report"
        )
        raise TargetError(
            f"{python}: does not work as a Python 3.6+ interpreter ({why})"
            + _too_old_next_step(why)
        )
    return data
