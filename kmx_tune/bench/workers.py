"""The worker processes of ``kmx-tune bench``: ``_in_target/kmx_bench.py`` running in
the target interpreter, one per process-level setting, driven over stdin/stdout with
one JSON object per line (the protocol is described in that script).

Workers stay alive for the whole run, so every setting's steps can alternate with every
other's at a fine grain: a machine that gets busier or quieter during the run hits all
settings alike. Only one worker computes at a time; the others wait on stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from kmx_tune.errors import KmxError, TargetError
from kmx_tune.target import IN_TARGET_DIR

SCRIPT = IN_TARGET_DIR / "kmx_bench.py"


class WorkerDied(KmxError):
    """A worker ended without a report: *stderr* is what it wrote, *status* its exit."""

    def __init__(self, message: str, stderr: str, status: int | None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.status = status


class WorkerFailed(KmxError):
    """A worker reported an error: kind and message as it sent them."""

    def __init__(self, report: Mapping[str, Any]) -> None:
        super().__init__(str(report.get("message")))
        self.report = dict(report)
        self.kind = str(report.get("kind"))


class Worker:
    def __init__(
        self, python: str, config: Mapping[str, Any], env: Mapping[str, str], folder: Path
    ) -> None:
        self.python = python
        self.stderr_path = folder / f"worker-{id(self):x}.err"
        self._stderr: IO[bytes] = open(self.stderr_path, "wb")  # noqa: SIM115 (closed in close())
        try:
            self.proc = subprocess.Popen(
                [python, str(SCRIPT), json.dumps(dict(config, scratch=str(folder)))],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=dict(env),
                text=True,
                encoding="utf-8",
                start_new_session=True,  # its OpenMP and engine threads go with it
            )
        except OSError as exc:
            self._stderr.close()
            raise TargetError(
                f"{python}: cannot run it ({exc.strerror or exc}); give the path of a Python "
                "3.6+ interpreter with --python"
            ) from None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.ready: dict[str, Any] | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next message; raises WorkerDied, WorkerFailed, or KmxError on timeout."""
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise KmxError(
                    f"the benchmark gave no answer within {timeout:.0f} s; try --quick or a "
                    "smaller --batch"
                ) from None
            if line is None:
                status = self.proc.wait()
                raise WorkerDied("the benchmark process ended early", self.stderr(), status)
            if not line.startswith("{"):
                continue
            try:
                message: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == "error":
                raise WorkerFailed(message)
            return message

    def send(self, command: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            status = self.proc.wait()
            raise WorkerDied("the benchmark process ended early", self.stderr(), status) from None

    def ask(self, command: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def stderr(self) -> str:
        with contextlib.suppress(OSError):
            self._stderr.flush()
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def close(self, *, kill: bool = False) -> None:
        """End the worker: ask it to quit (or, with *kill*, kill it and its threads)."""
        if self.proc.poll() is None and kill:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
        self._stderr.close()
