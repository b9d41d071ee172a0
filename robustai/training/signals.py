"""SIGINT/SIGTERM as a request to stop cleanly: finish the step, checkpoint, exit."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM outside the training loop (loading the data, the final evaluation), raised like
    the KeyboardInterrupt of a Ctrl-C so the command can say in one line what to resume."""


@contextmanager
def raise_on_sigterm() -> Iterator[None]:
    """While active, SIGTERM raises :class:`Terminated` in the main thread (Python's default
    would end the process silently). :func:`stop_on_signals` takes over inside the loop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class StopRequest(threading.Event):
    """Set by the first SIGINT/SIGTERM; remembers which signal it was."""

    signum: int | None = None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """While active, the first SIGINT/SIGTERM sets the returned event (training stops after the
    current step and saves a checkpoint); a second one aborts at once. Outside the main thread
    signals cannot be caught, and the event is simply never set."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        stop.signum = signum
        stop.set()
        log.warning(
            "%s received: finishing the current step and saving a checkpoint (again to abort)",
            signal.Signals(signum).name,
        )

    for s in _SIGNALS:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
