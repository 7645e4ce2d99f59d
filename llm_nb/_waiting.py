"""Waiting in a thread that must still notice Ctrl-C or a kernel's interrupt.

A signal may be delivered to any thread of the process; Python then runs its handler (which
raises KeyboardInterrupt) in the main thread, at the next bytecode that thread executes. A
main thread blocked in one long wait executes none, so every wait that an interrupt must be
able to end is made of short slices. Each caller that blocks on llm_nb's loop thread (a
``%%llm`` cell, a panel used without a running loop, ``evaluate()``) waits through here.
"""

from __future__ import annotations

import threading
import time

#: The longest slice: how late, at most, an interrupt is noticed.
SIGNAL_CHECK_S = 0.25


def wait_interruptibly(event: threading.Event, timeout: float | None = None) -> bool:
    """``event.wait(timeout)`` in slices of at most :data:`SIGNAL_CHECK_S`; True once the
    event is set, False when ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SIGNAL_CHECK_S if deadline is None else deadline - time.monotonic()
        if left <= 0:
            return event.is_set()
        if event.wait(min(left, SIGNAL_CHECK_S)):
            return True
