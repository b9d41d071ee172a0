"""SIGINT/SIGTERM as a request to stop cleanly: finish the step, checkpoint, exit."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

log = logging.getLogger(__name__)

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# The same signal again within this many seconds of one a handler acted on is a repeat, not a
# second request (0: never; see one_request_per_signal), and when each was last acted on.
_repeat_window = 0.0
_acted: dict[int, float] = {}


def _repeat(signum: int) -> bool:
    """Whether to ignore this signal as a repeat; otherwise it is recorded as acted on."""
    now = time.monotonic()
    last = _acted.get(signum)
    if _repeat_window > 0 and last is not None and now - last < _repeat_window:
        log.info("%s again at once: the same request", signal.Signals(signum).name)
        return True
    _acted[signum] = now
    return False


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
        if not _repeat(signum):
            raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def one_request_per_signal(window: float) -> Iterator[None]:
    """While active, the same signal again within ``window`` seconds of one a handler acted on
    is the same request, not a second one (which would abort): a sweep member gets a scheduler's
    SIGTERM, or a terminal's Ctrl-C, both directly and forwarded by its sweep's launching
    process. Outside the training loop SIGINT raises KeyboardInterrupt and SIGTERM
    :class:`Terminated`, each once."""
    global _repeat_window
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if not _repeat(signum):
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated

    # A signal the process was started ignoring (SIGINT in a shell's background job) stays so.
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    for s, h in previous.items():
        if h is not signal.SIG_IGN:
            signal.signal(s, handler)
    window_before, _repeat_window = _repeat_window, window
    _acted.clear()
    try:
        yield
    finally:
        _repeat_window = window_before
        for s, h in previous.items():
            signal.signal(s, h)


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
        if _repeat(signum):
            return
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
