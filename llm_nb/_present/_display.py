"""The two ways a cell's answers are drawn: a live rich output, or plain printed text.

In a kernel (JupyterLab, Notebook 7, VS Code, nbclient) one output is created with a
display id and updated in place; each update replaces the whole answer, so the saved
notebook ends up holding the final text. A terminal IPython has no display to update, so the
answer is printed as it grows, and side-by-side answers are printed one after another as
each model finishes, without the escape sequences a model may have put in them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._terminal import ControlStripper, strip_controls
from ._calls import Call
from ._figures import figures, live_figures
from ._render import (
    Bundle,
    Column,
    answer_bundle,
    columns_bundle,
    columns_text,
    waiting_bundle,
    with_footer,
)
from ._runner import View


def has_rich_display(shell: Any) -> bool:
    """True in a kernel. Terminal IPython (TerminalInteractiveShell) and a bare
    InteractiveShell print displays as text, so live updates would repeat the answer."""
    return getattr(shell, "kernel", None) is not None


def ipython_display() -> Callable[..., Any]:
    """IPython's ``display``, imported on use (it is untyped, hence the typed handle)."""
    from IPython.display import display

    fn: Callable[..., Any] = display
    return fn


def make_view(shell: Any, fmt: str) -> View:
    return RichView(fmt) if has_rich_display(shell) else PlainView()


def _note(call: Call) -> str | None:
    if call.interrupted:
        return "interrupted"
    if call.error is not None:
        return "error"
    return None


#: How a cell sets the token limit (named when the limit cut an answer).
LIMIT = "-n"


def _footer(call: Call, final: bool) -> str:
    """One answer's footer: the live figures while it streams, then the final ones (none
    when no token came: an error or a stop says so itself)."""
    record = call.record
    if not (final or call.done):
        return live_figures(record)
    return str(figures(record, LIMIT)) if record.trace.token_times_ns else ""


def _column(call: Call, final: bool) -> Column:
    record = call.record
    footer = str(figures(record, LIMIT)) if call.done or final else live_figures(record)
    note = _note(call)
    if note == "error":
        note = f"error: {strip_controls(str(call.error))}"
    return Column(call.label, record.text, footer, note, failed=call.error is not None)


class RenderBudget:
    """Live frames of a long answer are skipped while drawing them would take more than
    :attr:`SHARE` of the time: each frame renders the whole answer so far (Markdown to
    sanitized HTML), so its cost grows with the answer. The final frame always draws."""

    SHARE = 0.25

    def __init__(self) -> None:
        self._next = 0.0

    def due(self, final: bool) -> bool:
        return final or time.perf_counter() >= self._next

    def spent(self, started: float) -> None:
        """Record a frame that began at ``started`` (``time.perf_counter()``)."""
        now = time.perf_counter()
        self._next = now + (now - started) * (1 / self.SHARE - 1)


class RichView:
    """One output updated in place through its display id."""

    def __init__(self, fmt: str, display: Callable[..., Any] | None = None) -> None:
        self._fmt = fmt
        self._display = display
        self._handle: Any = None
        self._shown: Bundle | None = None
        self._budget = RenderBudget()
        #: Updates sent so far (the first display not included).
        self.updates = 0

    def start(self, calls: Sequence[Call]) -> None:
        display = self._display or ipython_display()
        self._shown = waiting_bundle()
        self._handle = display(self._shown, raw=True, display_id=True)

    def update(self, calls: Sequence[Call], *, final: bool) -> None:
        if not self._budget.due(final):
            return
        started = time.perf_counter()
        bundle = self._bundle(calls, final)
        self._budget.spent(started)
        # Skipping identical frames costs a string compare; sending one costs a message to
        # every connected frontend. The final frame always goes, so the notebook saves it.
        if bundle == self._shown and not final:
            return
        self._handle.update(bundle, raw=True)
        self._shown = bundle
        self.updates += 1

    def _bundle(self, calls: Sequence[Call], final: bool) -> Bundle:
        if len(calls) > 1:
            return columns_bundle([_column(c, final) for c in calls], self._fmt)
        call = calls[0]
        record = call.record
        if not record.text and not record.reasoning:
            return {"text/plain": ""} if final else waiting_bundle(call.waiting_s)
        # A JSON answer is only parsed once complete; until then it shows as text.
        fmt = "text" if self._fmt == "json" and not final else self._fmt
        bundle = answer_bundle(record.text, fmt, reasoning=record.reasoning, note=_note(call))
        return with_footer(bundle, _footer(call, final))


class PlainView:
    """Printed output for terminals: the answer as it grows, or one section per model."""

    def __init__(self) -> None:
        self._printed = 0
        self._stripper = ControlStripper()
        self._finished: set[int] = set()

    def start(self, calls: Sequence[Call]) -> None:
        self._printed = 0
        self._stripper = ControlStripper()
        self._finished.clear()

    def update(self, calls: Sequence[Call], *, final: bool) -> None:
        if len(calls) == 1:
            self._grow(calls[0], final)
            return
        for i, call in enumerate(calls):
            if i not in self._finished and (call.done or final):
                self._finished.add(i)
                _write(strip_controls(columns_text([_column(call, True)])) + "\n\n")

    def _grow(self, call: Call, final: bool) -> None:
        text = call.record.text
        _write(self._stripper.feed(text[self._printed :]))
        self._printed = len(text)
        if final:
            _write(self._stripper.flush())
            note = _note(call)
            end = "" if not text or text.endswith("\n") else "\n"
            _write(end + (f"[{note}]\n" if note and text else ""))


def _write(text: str) -> None:
    # sys.stdout is looked up each time: IPython swaps it (capture, per-cell streams).
    if text:
        sys.stdout.write(text)
        sys.stdout.flush()
