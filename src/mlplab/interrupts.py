"""Signals as exceptions, and the few writes a signal must not cut in half.

SIGTERM is delivered like Ctrl-C (``Terminated`` is a ``KeyboardInterrupt``), so every ``except
KeyboardInterrupt`` cleans up the same way. ``deferred()`` holds SIGINT and SIGTERM back while a run's status
is written, so a second signal (or one that arrives during the closing writes) cannot leave it RUNNING; the
held signal is delivered as soon as the writes are done.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import threading
from typing import Iterator

HELD = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, like Ctrl-C."""


def on_sigterm(signum, frame):
    raise Terminated()


def _once(signum, frame):
    for held in HELD:  # the clean-up this starts is not cut short by the next signal
        signal.signal(held, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def install(once: bool = False) -> None:
    """SIGTERM → ``Terminated``; SIGINT → KeyboardInterrupt even where it was inherited ignored (a job started
    in the background by a script), so an explicit SIGINT still ends its run KILLED. ``once``: later signals
    are ignored (a search worker, which Ctrl-C reaches through the terminal and its parent at once).
    SIGUSR1 prints every thread's stack to stderr and goes on: ``kill -USR1 <pid>`` shows where a run that
    seems stuck is."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    signal.signal(signal.SIGTERM, _once if once else on_sigterm)
    signal.signal(signal.SIGINT, _once if once else signal.default_int_handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT / SIGTERM held until the block ends, then delivered (the first one). Off the main thread,
    where Python runs no handlers anyway, it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in HELD}
    for signum in HELD:
        signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if held:
            signal.raise_signal(held[0])
