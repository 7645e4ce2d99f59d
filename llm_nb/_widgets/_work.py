"""Where a panel's work runs, and the one thread that touches its widgets.

In a kernel, widget callbacks run on the kernel's main thread, inside its asyncio loop. A
panel's work (a stream, a listing, a pull) is therefore started as a task on that loop: the
callback returns at once, the kernel goes back to reading messages (so a Stop click gets
through while an answer streams), and the task updates widgets from that same thread.

With no running loop (a script, a synchronous test) the work runs on llm_nb's private loop
thread while the caller waits. Widget updates are then never made there: the work hands them
to the caller's thread through a queue (``post``), and the caller applies them in order. So in
both cases exactly one thread touches the widgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeAlias

from .._loop import Job
from .._magics._runner import Call
from .._session import in_loop_thread, submit

log = logging.getLogger("llm_nb.widgets")

#: ``post(fn)`` runs ``fn`` on the widgets' thread (now, when already there).
Post: TypeAlias = Callable[[Callable[[], None]], None]
Body: TypeAlias = Callable[[Post], Coroutine[Any, Any, None]]

#: How often a caller waiting on the private loop checks for an interrupt.
_WAIT_S = 0.25


def _now(fn: Callable[[], None]) -> None:
    fn()


class Worker:
    """Runs one piece of a panel's work at a time; ``stop()`` cancels it.

    An exception the work raises is shown through ``on_error`` (on the widgets' thread) and
    the panel keeps working. ``on_end`` runs on the widgets' thread once the work has ended,
    however it ended: also when it was stopped before its first step, when none of its own
    code (``finally`` blocks included) ever ran.
    """

    def __init__(self, on_error: Callable[[BaseException], None]) -> None:
        self._on_error = on_error
        #: The running task when the work runs on the caller's loop (a kernel).
        self.task: asyncio.Task[None] | None = None
        self._job: Job | None = None
        #: From start() until on_end has run: a click in between must not start more work.
        self._active = False

    @property
    def busy(self) -> bool:
        return self._active

    def start(self, body: Body, on_end: Callable[[], None] | None = None) -> None:
        """Run ``body(post)``: as a task on the running loop if there is one, else on
        llm_nb's loop while this thread waits and applies what the body posts."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._active = True
        if loop is not None and not in_loop_thread():
            self.task = loop.create_task(self._guarded(body, _now))
            # Done callbacks run on the task's loop, which is the widgets' thread.
            self.task.add_done_callback(lambda _: self._ended(on_end))
            return
        self.task = None
        try:
            self._wait(body)
        finally:
            self._ended(on_end)

    def _ended(self, on_end: Callable[[], None] | None) -> None:
        self._active = False
        if on_end is not None:
            self._apply(on_end)

    def stop(self) -> None:
        """Cancel the work (from any thread); its ``finally`` blocks and ``on_end`` still
        run, so the final frame is drawn."""
        if self.task is not None:
            self.task.cancel()
        elif self._job is not None:
            self._job.future.cancel()  # thread-safe: the loop thread cancels the task

    async def wait(self) -> None:
        """Until the current work has ended (for tests and async callers)."""
        if self.task is not None:
            await asyncio.wait([self.task])

    async def _guarded(self, body: Body, post: Post) -> None:
        try:
            await body(post)
        except Exception as exc:  # shown in the panel, which must keep working
            if not _expected(exc):
                log.error("llm_nb widget work failed", exc_info=exc)
            post(functools.partial(self._on_error, exc))

    def _wait(self, body: Body) -> None:
        updates: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        job = self._job = submit(self._guarded(body, updates.put))
        try:
            while True:
                try:
                    update = updates.get(timeout=_WAIT_S)
                except queue.Empty:
                    # Every post happens before the task ends, so once it has ended and
                    # the queue is empty, nothing more can come.
                    if job.finished.is_set():
                        break
                    continue
                self._apply(update)
        except KeyboardInterrupt:
            job.cancel_and_wait()
            with contextlib.suppress(queue.Empty):
                while True:
                    self._apply(updates.get_nowait())
            raise

    def _apply(self, update: Callable[[], None]) -> None:
        # A failing redraw must not leave the caller with work still running behind it.
        try:
            update()
        except Exception as exc:
            log.error("llm_nb widget update failed", exc_info=exc)
            self._on_error(exc)


def _expected(exc: BaseException) -> bool:
    from .._errors import LLMError

    return isinstance(exc, LLMError)


async def pump(
    calls: Sequence[Call], draw: Callable[[bool], None], throttle_s: float, post: Post
) -> None:
    """Consume every call's stream concurrently on the running loop.

    ``draw(False)`` is posted after new tokens, at most once per ``throttle_s`` whatever the
    token rate, and ``draw(True)`` once at the end, also when the work is stopped: then
    every unfinished stream is cancelled (it closes its HTTP response and records the call
    as cancelled) before the final draw. A failing call keeps its error in ``Call.error``;
    the others go on.
    """
    wake = asyncio.Event()

    async def consume(call: Call) -> None:
        try:
            async for _ in call.stream:
                wake.set()
        except Exception as exc:  # kept on the call: one failing model must not stop others
            call.error = exc
        finally:
            call.done = True
            wake.set()

    # Tasks copy the current context: a stats run id set by the caller follows each call.
    tasks = [asyncio.ensure_future(consume(call)) for call in calls]
    try:
        while not all(t.done() for t in tasks):
            await wake.wait()
            wake.clear()
            if all(t.done() for t in tasks):
                break
            post(lambda: draw(False))
            # The rate bound: after drawing, sleep out the throttle (or until all are done).
            await asyncio.wait(tasks, timeout=throttle_s)
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        for call, t in zip(calls, tasks, strict=True):
            if t.cancelled() or call.record.status == "cancelled":
                call.interrupted = True
                # A task cancelled before its first step never ran the stream, which would
                # have recorded this itself.
                call.record.status = "cancelled"
            call.done = True
        post(lambda: draw(True))
