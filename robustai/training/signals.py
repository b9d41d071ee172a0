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
