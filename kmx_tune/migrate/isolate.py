"""Analyse one file in a child process, so that nothing the parser does with a hostile
file can take kmx-tune down with it.

Why a child rather than only a depth check before libcst sees the file: libcst parses in
native code whose stack and memory use per nesting level is its own (and changes between
releases), then walks the tree in Python. A depth bound of our own would be a guess, too
low for valid code (CPython compiles a 350-term string concatenation, which overflowed
libcst's default recursion limit) or too high for the parser (2,000 nested parentheses
overflowed its stack: SIGSEGV, kmx-tune gone, no answer for any file). So there are two
guards. First, code that CPython's own parser (which guards its stack) refuses for its
depth is E999 before libcst sees it (:func:`kmx_tune.migrate.source.migrate_source`).
Then the analysis runs in a forked child, on a large stack with a deep recursion limit,
so what CPython compiles is analysed (the deepest chains CPython accepts, ~3,000 terms,
take 5-25 s); whatever still breaks ends as a RecursionError or a crash *of the child*,
an E999 finding for that file while the run goes on. The child is also bounded in
memory (RLIMIT_AS) and in time. A fork costs ~2 ms; the smallest analysis ~30 ms.

The child sends the report back as JSON (the findings) and the rewritten bytes; nothing
is unpickled.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from dataclasses import asdict
from typing import Any

from kmx_tune.migrate.model import CodeFinding, FileReport
from kmx_tune.migrate.source import migrate_source

STACK_BYTES = 256 << 20  # the analysis thread's stack: touched pages only are used
RECURSION_LIMIT = 200_000  # libcst walks the tree recursively, in Python
MEMORY_BYTES = 6 << 30  # address space of the child, the stack above included
TIME_LIMIT_S = 300.0  # far beyond what a file under the size bound takes (~30 s)

_EXIT_FAILED = 70


def _deep(path: str, raw: bytes, why: str) -> FileReport:
    message = (
        f"nests too deeply to analyse ({why}): split the deepest expression into smaller "
        "ones, or fix the file by hand"
    )
    return FileReport(path, (CodeFinding(path, 1, 1, "E999", message, None, False),), raw, None)


def _not_analysed(path: str, raw: bytes, why: str) -> FileReport:
    finding = CodeFinding(path, 1, 1, "E901", f"not analysed: {why}; fix it by hand", None, False)
    return FileReport(path, (finding,), raw, None)


def _encode(report: FileReport) -> bytes:
    header = {
        "findings": [asdict(f) for f in report.findings],
        "encoding": report.encoding,
        "new_source": None if report.new_source is None else len(report.new_source),
        "image_code": report.image_code,
        "sets_format": report.sets_format,
    }
    return json.dumps(header).encode() + b"\n" + (report.new_source or b"")


def _decode(payload: bytes, raw: bytes) -> FileReport:
    head, _, rest = payload.partition(b"\n")
    header: dict[str, Any] = json.loads(head)
    size = header["new_source"]
    if size is not None and size != len(rest):
        raise ValueError("truncated report")
    return FileReport(
        path="",
        findings=tuple(CodeFinding(**f) for f in header["findings"]),
        source=raw,
        new_source=None if size is None else rest,
        encoding=header["encoding"],
        image_code=header["image_code"],
        sets_format=header["sets_format"],
    )


def _analyse_here(raw: bytes, to: str, path: str) -> FileReport:
    """The analysis, on a large stack, with RecursionError and MemoryError said as
    findings."""
    box: dict[str, FileReport] = {}

    def work() -> None:
        try:
            box["report"] = migrate_source(raw, to, path)
        except RecursionError:
            box["report"] = _deep(path, raw, "the analysis ran out of recursion depth")
        except MemoryError:
            box["report"] = _not_analysed(path, raw, "it ran out of memory")

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size()
    sys.setrecursionlimit(RECURSION_LIMIT)
    try:
        threading.stack_size(STACK_BYTES)
        worker = threading.Thread(target=work, name="kmx-migrate-analysis")
        worker.start()
    finally:
        threading.stack_size(old_stack)
    worker.join()
    sys.setrecursionlimit(old_limit)
    return box["report"]


def _child(raw: bytes, to: str, path: str, fd: int) -> None:
    """Runs in the forked child: analyse, send, and leave without running any of the
    parent's exit handlers or flushing its buffers."""
    status = 0
    try:
        with contextlib.suppress(ValueError, OSError):  # the limit is a safeguard only
            import resource

            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            soft = MEMORY_BYTES if hard == resource.RLIM_INFINITY else min(MEMORY_BYTES, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        view = memoryview(_encode(_analyse_here(raw, to, path)))
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        status = _EXIT_FAILED
    finally:
        os._exit(status)


def _read_until_exit(fd: int, deadline: float) -> tuple[bytes, bool]:
    """Everything the child writes, and whether the deadline passed first."""
    chunks: list[bytes] = []
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return b"".join(chunks), True
        if not poller.poll(min(left, 1.0) * 1000):
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)


def analyse(raw: bytes, to: str, path: str, time_limit_s: float = TIME_LIMIT_S) -> FileReport:
    """The FileReport of :func:`kmx_tune.migrate.source.migrate_source`, computed in a
    forked child: a crash, a stack overflow, running out of memory or of time there is a
    finding for *path*, never the end of kmx-tune."""
    if not hasattr(os, "fork"):
        return _analyse_here(raw, to, path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_end)
        _child(raw, to, path, write_end)
    os.close(write_end)
    timed_out = False
    try:
        payload, timed_out = _read_until_exit(read_end, time.monotonic() + time_limit_s)
    except BaseException:  # Ctrl-C: the child goes too
        timed_out = True
        raise
    finally:
        os.close(read_end)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if timed_out:
        return _not_analysed(path, raw, f"its analysis took longer than {time_limit_s:.0f} s")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:  # not ours: the kernel's out-of-memory killer
            return _not_analysed(path, raw, "its analysis was killed, most likely out of memory")
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return _deep(path, raw, f"the analysis crashed with {name}, most likely in the parser")
    if os.WEXITSTATUS(status) != 0:
        code = os.WEXITSTATUS(status)
        return _not_analysed(path, raw, f"its analysis failed (exit status {code})")
    try:
        report = _decode(payload, raw)
    except (ValueError, KeyError, TypeError):
        return _not_analysed(path, raw, "its analysis sent back no readable report")
    return FileReport(
        path,
        report.findings,
        raw,
        report.new_source,
        report.encoding,
        image_code=report.image_code,
        sets_format=report.sets_format,
    )
