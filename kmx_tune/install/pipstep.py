"""pip runs that change the target, as a transaction needs them: pip's output is shown
as it comes *and* captured (so a failure names pip's own error), the child's pid is
reported as soon as it starts (the journal records it), the child is stopped and
waited for when this process is interrupted, and during a rollback the child runs
in a session of its own, so that a Ctrl-C or a closed terminal (signals to the
terminal's process group) cannot stop the rollback half-way."""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Callable, Sequence
from typing import IO, Any

from kmx_tune.dists import Distribution, normalize
from kmx_tune.errors import KmxError, TargetError
from kmx_tune.install.pip import PipRun, pip_env

_STOP_GRACE_S = 10.0


def _echo(out: IO[str] | None, text: str) -> IO[str] | None:
    """Write *text* to *out*; on the first failure (a closed terminal, a full pipe)
    stop echoing rather than fail the step. Returns the stream to use next."""
    if out is None or not text:
        return out
    try:
        out.write(text)
        out.flush()
    except Exception:  # a terminal that is gone must not stop pip or the rollback
        return None
    return out


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End *child* (SIGTERM, then SIGKILL after a grace period) and reap it."""
    if child.poll() is not None:
        return
    with contextlib.suppress(OSError):
        child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            child.kill()
        child.wait()


def run_step(
    python: str,
    args: Sequence[str],
    out: IO[str] | None,
    *,
    on_start: Callable[[int], None] | None = None,
    own_session: bool = False,
) -> PipRun:
    """Run ``python -m pip ARGS``: its output goes to *out* line by line (control
    characters escaped; nothing when *out* is None) and is captured in the result.
    *on_start* gets the child's pid. With *own_session* the child cannot be reached
    by signals sent to this process's terminal or process group."""
    from kmx_tune.render import safe

    cmd = [python, "-m", "pip", *args]
    try:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=pip_env(),
            start_new_session=own_session,
        )
    except OSError as exc:
        raise TargetError(f"{python}: cannot run it ({exc.strerror or exc})") from None
    captured: list[str] = []
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    try:
        if on_start is not None:
            on_start(child.pid)
        assert child.stdout is not None
        fd = child.stdout.fileno()
        while True:
            data = os.read(fd, 65536)
            text = decoder.decode(data, final=not data)
            captured.append(text)
            pending += text
            if "\n" in pending:
                done, pending = pending.rsplit("\n", 1)
                out = _echo(out, safe(done) + "\n")
            if not data:
                break
        out = _echo(out, safe(pending) + ("\n" if pending else ""))
        returncode = child.wait()
    except BaseException:
        _stop(child)
        raise
    finally:
        if child.stdout is not None:
            child.stdout.close()
    return PipRun(tuple(args), returncode, "".join(captured))


def list_installed(python: str, *, own_session: bool = False) -> dict[str, Distribution]:
    """What pip lists as installed in the target: {normalized name: Distribution}.
    Raises KmxError with pip's reason when it cannot say."""
    run = run_step(
        python,
        ["list", "--verbose", "--format=json", "--disable-pip-version-check"],
        None,
        own_session=own_session,
    )
    lines = [line for line in run.output.splitlines() if line.startswith("[")]
    if not run.ok or not lines:
        raise KmxError(f"`{python} -m pip list` failed: {run.error_line()}")
    try:
        rows: list[dict[str, Any]] = json.loads(lines[-1])
    except ValueError:
        raise KmxError(f"`{python} -m pip list` printed no list") from None
    return {
        normalize(row["name"]): Distribution(row["name"], row["version"], row.get("location", ""))
        for row in rows
    }
