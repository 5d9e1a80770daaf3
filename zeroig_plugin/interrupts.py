"""SIGTERM handled as Ctrl-C, so that long commands stopped by ``timeout`` or ``docker stop`` keep
what they finished and leave no temporary files."""
from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

__all__ = ["StopSignal", "sigterm_as_interrupt"]


@dataclass
class StopSignal:
    """The signal that stopped a run: SIGINT (Ctrl-C) unless SIGTERM came first."""

    number: int = signal.SIGINT

    @property
    def exit_status(self) -> int:
        """128 + the signal's number (130, 143), as shells report a process the signal stopped."""
        return 128 + self.number


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[StopSignal]:
    """While inside, SIGTERM raises KeyboardInterrupt as Ctrl-C does, and the yielded
    :class:`StopSignal` records which signal it was. Python runs signal handlers on the main thread
    only, so elsewhere this changes nothing."""
    stop = StopSignal()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def interrupt(signal_number, frame):
        stop.number = signal_number
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
