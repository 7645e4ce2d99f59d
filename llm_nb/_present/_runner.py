"""Running calls: every stream consumed concurrently, redrawn at a bounded rate, stopped cleanly.

:func:`pump` is the one loop that consumes streams, for ``%%llm`` cells and for the panels.
The streams run concurrently on one asyncio loop (so side-by-side wall time is the slowest
model's, not the sum) and only fill their records. After new tokens the drawing thread is
asked for a live frame, at most once per ``throttle_s`` whatever the token rate; during a
silence (a long prefill, a model loading) it is also asked after each ``SIGNAL_CHECK_S``
without tokens, so the view can say how long it has waited; every live frame, a silent one
too, is followed by ``throttle_s`` without another. Then comes exactly one final frame
(:class:`Frames`), however the run ended.

A stop (the kernel's interrupt, Ctrl-C, a Stop button) cancels the pump: every unfinished
stream is cancelled (each ``ChatStream`` then closes its HTTP response and records the call as
cancelled) and the final frame still draws, so the partial answers stay on screen.

:func:`run_calls` is the blocking form a ``%%llm`` cell uses: the pump runs on llm_nb's loop
thread while the cell's thread draws (``_work.run_blocking``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .._waiting import SIGNAL_CHECK_S
from ._calls import Call, settle
from ._work import Post, run_blocking


class Frames:
    """What a run draws: live frames while it streams, then the final frame, exactly once.

    The final frame settles the calls first (``_calls.settle``), so it shows which were
    stopped. Drawing it again (the pump's end, then the owner's clean-up after a stop that
    came before the pump's first step) does nothing.
    """

    def __init__(self, calls: Sequence[Call], draw: Callable[[bool], None]) -> None:
        self._calls = calls
        self._draw = draw
        self.ended = False

    def live(self) -> None:
        if not self.ended:
            self._draw(False)

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        settle(self._calls)
        self._draw(True)


async def pump(calls: Sequence[Call], frames: Frames, throttle_s: float, post: Post) -> None:
    """Consume every call's stream concurrently on the running loop, posting frames.

    A call that fails keeps its error in ``Call.error``; the others go on.
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

    loop = asyncio.get_running_loop()
    drawn = asyncio.Event()

    def draw_live() -> None:
        try:
            frames.live()
        finally:
            loop.call_soon_threadsafe(drawn.set)

    async def paced() -> None:
        # The throttle counts from when the drawing thread drew, not from when the frame was
        # asked for: a drawing thread that is late once must not draw the next one early.
        await drawn.wait()
        await asyncio.sleep(throttle_s)

    # Tasks copy the current context: a stats run id set by the caller follows each call.
    tasks = [asyncio.ensure_future(consume(call)) for call in calls]
    finished = asyncio.gather(*tasks, return_exceptions=True)
    try:
        while not all(t.done() for t in tasks):
            try:
                async with asyncio.timeout(SIGNAL_CHECK_S):
                    await wake.wait()
            except TimeoutError:
                # Silence: redrawn anyway (a view skips an unchanged frame), so a long wait
                # for the first token shows how long it has lasted. Paced like any frame: one
                # drawn late holds the tokens that came meanwhile, and the next must not follow
                # it at once.
                pass
            else:
                wake.clear()
                if all(t.done() for t in tasks):
                    break
            drawn.clear()
            post(draw_live)
            # The rate bound: once drawn, sleep out the throttle (or until all are done).
            gate = asyncio.ensure_future(paced())
            try:
                waiters: list[asyncio.Future[Any]] = [gate, finished]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                gate.cancel()
    finally:
        pending = [t for t in tasks if not t.done()]
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        post(frames.end)


class View(Protocol):
    """Where a cell's answers are drawn (a live rich display, or a terminal)."""

    def start(self, calls: Sequence[Call]) -> None: ...

    def update(self, calls: Sequence[Call], *, final: bool) -> None: ...


def run_calls(calls: Sequence[Call], view: View, throttle_s: float) -> bool:
    """Stream every call into ``view`` from this thread; True when interrupted.

    A call that fails keeps its error in ``Call.error`` (the others go on); anything that is
    not an :class:`LLMError` is a bug and is re-raised here with its traceback.
    """
    from .._errors import LLMError

    frames = Frames(calls, lambda final: view.update(calls, final=final))
    interrupted = False
    view.start(calls)
    try:
        run_blocking(lambda post: pump(calls, frames, throttle_s, post))
    except KeyboardInterrupt:
        interrupted = True
    # Already drawn, unless the interrupt came before the pump's first step or the pump's
    # clean-up outlasted the grace period.
    frames.end()
    for call in calls:
        if call.error is not None and not isinstance(call.error, LLMError):
            raise call.error
    return interrupted
