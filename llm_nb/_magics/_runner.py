"""Running a cell's calls: every stream a task on llm_nb's loop, the display in the main thread.

The streams run concurrently on the private loop thread (so side-by-side wall time is the
slowest model's, not the sum) and only fill their records; the main thread, where IPython
expects output to be published, wakes on new tokens and redraws at most once per
``throttle_s``, whatever the token rate, then once more at the end with the full answers.

An interrupt (Ctrl-C, the kernel's interrupt button) lands in the main thread's wait. It
cancels every task (each ``ChatStream`` then closes its HTTP response and records the call
as cancelled), waits briefly for that cleanup, and still draws the final frame, so the
partial answers stay on screen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .._errors import LLMError
from .._loop import CANCEL_GRACE_S, Job
from .._session import submit
from .._stream import ChatStream
from .._types import ChatResponse

#: How often the waiting main thread checks for an interrupt when no token arrives.
_SIGNAL_CHECK_S = 0.25


@dataclass(eq=False)
class Call:
    """One model's call in a cell: what the user typed, its stream, and how it ended."""

    label: str
    stream: ChatStream
    error: Exception | None = None
    done: bool = False
    interrupted: bool = False

    @property
    def record(self) -> ChatResponse:
        return self.stream.response

    @property
    def waiting_s(self) -> float:
        """Seconds since the request went out, while nothing of the answer has arrived."""
        trace = self.record.trace
        if self.done or trace.t_send_ns is None or trace.t_first_token_ns is not None:
            return 0.0
        return (time.perf_counter_ns() - trace.t_send_ns) / 1e9

    @property
    def tokens(self) -> int:
        """Tokens so far: the server's count when it gave one, else token-carrying chunks."""
        reported = self.record.usage.completion_tokens
        return reported if reported is not None else len(self.record.trace.token_times_ns)


class View(Protocol):
    """Where a cell's answers are drawn (a live rich display, or a terminal)."""

    def start(self, calls: Sequence[Call]) -> None: ...

    def update(self, calls: Sequence[Call], *, final: bool) -> None: ...


def run_calls(calls: Sequence[Call], view: View, throttle_s: float) -> bool:
    """Stream every call into ``view``; True when interrupted.

    A call that fails keeps its error in ``Call.error`` (the others go on); anything that is
    not an :class:`LLMError` is a bug and is re-raised here with its traceback.
    """
    wake = threading.Event()
    all_done = threading.Event()
    remaining = len(calls)

    async def consume(call: Call) -> None:
        nonlocal remaining
        try:
            async for _ in call.stream:
                wake.set()
        except Exception as exc:  # kept for the caller: one failing model must not stop others
            call.error = exc
        finally:
            # Only the loop thread touches `remaining`, so no lock is needed.
            call.done = True
            remaining -= 1
            if remaining == 0:
                all_done.set()
            wake.set()

    jobs: list[Job] = []
    interrupted = False
    try:
        view.start(calls)
        for call in calls:
            jobs.append(submit(consume(call)))
        while not all_done.is_set():
            # A bounded wait: SIGINT may be delivered to another thread, and then only a
            # main thread that wakes up now and then notices it (during a long prefill,
            # no token would wake it).
            if not wake.wait(_SIGNAL_CHECK_S):
                # Silence: redrawn anyway (an unchanged frame is not sent), so a long wait
                # for the first token shows how long it has lasted.
                view.update(calls, final=False)
                continue
            wake.clear()
            if all_done.is_set():
                break
            view.update(calls, final=False)
            # The rate bound: after drawing, sleep out the throttle (or until all are done).
            all_done.wait(throttle_s)
    except KeyboardInterrupt:
        interrupted = True
        _cancel(jobs, calls)
    except BaseException:
        # A failing display must not leave the streams running behind the error.
        _cancel(jobs, calls)
        raise
    view.update(calls, final=True)
    for call in calls:
        if call.error is not None and not isinstance(call.error, LLMError):
            raise call.error
    return interrupted


def _cancel(jobs: Sequence[Job], calls: Sequence[Call]) -> None:
    for job in jobs:
        job.future.cancel()
    for job in jobs:
        job.finished.wait(CANCEL_GRACE_S)
    for call in calls:
        if call.record.trace.t_end_ns is None or call.record.status == "cancelled":
            call.interrupted = True
            # A task cancelled before it started never ran the stream, which would have
            # recorded this; a stream stopped by the cancel has already done so.
            call.record.status = "cancelled"
        call.done = True
