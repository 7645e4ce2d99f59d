"""Where presentation work runs, and the one thread that draws it.

In a kernel, widget callbacks run on the kernel's main thread, inside its asyncio loop. A
panel's work (a stream, a listing, a pull) is therefore started there as a task
(:class:`Worker`): the callback returns at once, the kernel goes back to reading messages (so
a Stop click gets through while an answer streams), and the task draws from that same thread.

A ``%%llm`` cell, and a panel used with no running loop (a script, a synchronous test), must
instead wait for its work (:func:`run_blocking`): the work runs on llm_nb's private loop
thread and never draws there; it hands each redraw to the waiting thread through a queue
(``post``), which applies them in order. The waiting thread wakes at least every
``SIGNAL_CHECK_S`` (``llm_nb._waiting``), so Ctrl-C or the kernel's interrupt stops the work
within a moment. So in every case exactly one thread draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeAlias

from .._loop import Job
from .._session import in_loop_thread, submit
from .._waiting import SIGNAL_CHECK_S, wait_interruptibly

log = logging.getLogger("llm_nb.widgets")

Update: TypeAlias = Callable[[], None]
#: ``post(fn)`` runs ``fn`` on the drawing thread (now, when already there).
Post: TypeAlias = Callable[[Update], None]
Body: TypeAlias = Callable[[Post], Coroutine[Any, Any, None]]


def _now(fn: Update) -> None:
    fn()


def run_blocking(
    body: Body,
    apply: Callable[[Update], None] = _now,
    on_job: Callable[[Job], None] | None = None,
) -> None:
    """Run ``body(post)`` on llm_nb's loop while this thread waits, applying (through
    ``apply``) every update the body posts, in order, until the body has ended.

    On an interrupt the body is cancelled (its ``finally`` blocks still post their last
    redraws, which are applied) and KeyboardInterrupt is re-raised. An update that raises
    also cancels the body before the error propagates: nothing streams on behind it.
    ``on_job`` receives the running job (so another thread can cancel it).
    """
    updates: queue.SimpleQueue[Update] = queue.SimpleQueue()
    wake = threading.Event()
    ended = threading.Event()

    def post(fn: Update) -> None:
        updates.put(fn)
        wake.set()

    async def run() -> None:
        try:
            await body(post)
        finally:
            ended.set()
            wake.set()

    def drain() -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                apply(updates.get_nowait())

    job = submit(run())
    if on_job is not None:
        on_job(job)
    try:
        # Every post happens before the body ends; once it has ended and the queue is
        # drained, nothing more can come. (A body cancelled before its first step never
        # sets ``ended``: the job's own end is then seen at the next slice.)
        while not ((ended.is_set() or job.finished.is_set()) and updates.empty()):
            if wait_interruptibly(wake, SIGNAL_CHECK_S):
                wake.clear()
            drain()
        # The job's own end follows its body's at once (a callback on the loop thread).
        wait_interruptibly(job.finished)
    except KeyboardInterrupt:
        job.cancel_and_wait()
        drain()
        raise
    except BaseException:
        job.cancel_and_wait()
        raise
    if not job.future.cancelled():
        job.future.result()  # a bug in the body: its exception, with its traceback


class Worker:
    """Runs one piece of a panel's work at a time; ``stop()`` cancels it.

    An exception the work raises is shown through ``on_error`` (on the drawing thread) and
    the panel keeps working. ``on_end`` runs on the drawing thread once the work has ended,
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

    def start(self, body: Body, on_end: Update | None = None) -> None:
        """Run ``body(post)``: as a task on the running loop if there is one, else on
        llm_nb's loop while this thread waits and applies what the body posts."""
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        self._active = True
        if loop is not None and not in_loop_thread():
            self.task = loop.create_task(self._guarded(body, _now))
            # Done callbacks run on the task's loop, which is the drawing thread.
            self.task.add_done_callback(lambda _: self._ended(on_end))
            return
        self.task = None
        try:
            run_blocking(
                lambda post: self._guarded(body, post), self._apply, self._remember
            )  # fmt: skip
        finally:
            self._job = None
            self._ended(on_end)

    def _remember(self, job: Job) -> None:
        self._job = job

    def _ended(self, on_end: Update | None) -> None:
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

    def _apply(self, update: Update) -> None:
        # A failing redraw must not leave the caller with work still running behind it.
        try:
            update()
        except Exception as exc:
            log.error("llm_nb widget update failed", exc_info=exc)
            self._on_error(exc)


def _expected(exc: BaseException) -> bool:
    from .._errors import LLMError

    return isinstance(exc, LLMError)
