"""Signals during an install: SIGINT (Ctrl-C), SIGTERM (``kill``, ``timeout``, a CI
cancel) and SIGHUP (the terminal closed) all stop the change and start the rollback;
while the rollback runs they are noted and ignored, so a second Ctrl-C cannot stop it
half-way. (SIGKILL cannot be caught: the journal covers it.)

A handler raises at most once per :meth:`Guard.arm` and disarms itself as it raises,
so code that runs after the first signal -- the rollback -- is never cut short by
another one, and :func:`guarded` turns "a signal came just as the step ended" into
the same answer as "during the step"."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal asked this run to stop (a BaseException, like KeyboardInterrupt, so
    that ``except Exception`` in a step does not swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process the signal ended."""
        return 128 + self.signum


class Guard:
    """Handlers for SIGINT, SIGTERM and SIGHUP while the block runs (the previous
    ones come back after it). Armed, the first signal raises :class:`Interrupted`;
    disarmed, signals are only noted in :attr:`noted`."""

    def __init__(self) -> None:
        self.armed = False
        self.noted: list[int] = []
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.armed:
            self.armed = False
            raise Interrupted(signum)
        self.noted.append(signum)

    def __enter__(self) -> Guard:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.armed = False
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def guarded(guard: Guard, step: Callable[[], T]) -> tuple[T | None, BaseException | None]:
    """Run *step* with *guard* armed. Returns (its value, None), or (None, what
    stopped it): an exception it raised, or :class:`Interrupted` for a signal --
    also one that came after it returned but before the guard was disarmed, or one
    noted while the guard was down, before this step began."""
    if guard.noted:
        return None, Interrupted(guard.noted.pop(0))
    value: T | None = None
    error: BaseException | None = None
    try:
        guard.armed = True
        try:
            value = step()
        except BaseException as exc:
            error = exc
        finally:
            guard.armed = False
    except Interrupted as exc:  # the signal came between the step's end and the disarm
        value, error = None, exc
    if isinstance(error, KeyboardInterrupt):  # no guard (not the main thread): Ctrl-C
        error = Interrupted(signal.SIGINT)
    return value, error
