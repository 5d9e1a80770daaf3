"""Two small helpers that overlap decoding and encoding with the fit/inference thread.

``prefetch`` runs an iterator (the decoder) on a worker thread a few items ahead;
``BackgroundConsumer`` hands items (enhanced frames) to a worker thread (the encoder) in order.
Both re-raise the worker's exception in the calling thread and never block forever on a dead
worker, so Ctrl-C and errors reach the main thread promptly.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Iterable, Iterator, TypeVar

__all__ = ["prefetch", "BackgroundConsumer"]

T = TypeVar("T")
_POLL_SECONDS = 0.1
_DONE = object()


def _put_unless(target: queue.Queue, item: object, give_up: Callable[[], bool]) -> bool:
    """Put ``item``, waiting for room, unless ``give_up()`` turns true first; returns whether put."""
    while not give_up():
        try:
            target.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def prefetch(items: Iterable[T], depth: int = 4, name: str = "prefetch") -> Iterator[T]:
    """Yield ``items`` in order while a worker thread produces up to ``depth`` of them ahead.

    Leaving the loop early stops the worker (and closes ``items`` if it is a generator).
    """
    buffer: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not _put_unless(buffer, (item, None), stop.is_set):
                    return
            _put_unless(buffer, (_DONE, None), stop.is_set)
        except BaseException as error:  # handed to the consumer, which re-raises it
            _put_unless(buffer, (_DONE, error), stop.is_set)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


class BackgroundConsumer(Generic[T]):
    """Calls ``consume(item)`` on a worker thread for each submitted item, in order.

    Args:
        consume: the work per item (e.g. encode and mux one frame).
        depth: items that may wait before :meth:`submit` blocks.
    """

    def __init__(self, consume: Callable[[T], None], depth: int = 4, name: str = "consumer"):
        self._consume = consume
        self._buffer: queue.Queue = queue.Queue(depth)
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._buffer.get()
            if item is _DONE:
                return
            try:
                self._consume(item)
            except BaseException as error:  # re-raised in the submitting thread
                self._error = error
                return

    def submit(self, item: T) -> None:
        """Queue ``item``; raises the worker's exception if it has failed."""
        _put_unless(self._buffer, item, lambda: not self._worker.is_alive())
        self._raise_failure()

    def finish(self) -> None:
        """Wait until every submitted item is consumed; raises the worker's exception if any."""
        _put_unless(self._buffer, _DONE, lambda: not self._worker.is_alive())
        self._worker.join()
        self._raise_failure()

    def abort(self) -> None:
        """Drop the items not yet consumed and wait for the worker to stop; never raises."""
        while True:
            try:
                self._buffer.get_nowait()
            except queue.Empty:
                break
        _put_unless(self._buffer, _DONE, lambda: not self._worker.is_alive())
        self._worker.join()

    def _raise_failure(self) -> None:
        if self._error is not None:
            raise self._error
