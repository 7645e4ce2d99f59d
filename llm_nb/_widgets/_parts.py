"""Pieces every panel shares: the panel base class (with its saved output), the one-line
error display, and the answer view (sanitized HTML in a widget's value trait)."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w  # type: ignore[import-untyped]

from .._compat import widget_bundle
from .._errors import LLMError
from .._present._display import ipython_display
from .._present._render import Bundle, answer_bundle
from .._terminal import strip_controls
from .._types import ChatResponse
from ._saved import SavedOutput


def styled(widget: Any, *classes: str) -> Any:
    """``widget`` with CSS classes added (stable names for styling and browser tests)."""
    for name in classes:
        widget.add_class(name)
    return widget


def fill_width() -> Any:
    """A layout filling the panel's width, margins included (``width: 100%`` plus
    ipywidgets' margin would stick out past the cell's edge)."""
    return w.Layout(width="auto")


def fit_content() -> Any:
    """A layout as wide as its content (ipywidgets' default button width cuts longer text)."""
    return w.Layout(width="auto", flex="0 0 auto")


def one_line(exc: BaseException) -> str:
    """An error as one line: llm_nb's own message, else the exception's type and text."""
    text = exc.message if isinstance(exc, LLMError) else f"{type(exc).__name__}: {exc}"
    return " ".join(str(text).split()) or type(exc).__name__


class ErrorLine:
    """A one-line error under a panel's controls, hidden when there is none."""

    def __init__(self, *classes: str) -> None:
        self.widget = styled(w.HTML(), "llm-nb-error", *classes)
        self.widget.layout.display = "none"
        #: The line shown, as plain text ("" when hidden).
        self.text = ""

    def show(self, message: str | BaseException) -> None:
        text = one_line(message) if isinstance(message, BaseException) else message
        # A server's message may carry terminal escape sequences: debris on a page.
        self.text = " ".join(strip_controls(text).split())
        self.widget.value = (
            f'<span style="color:var(--jp-error-color1,#c00)">{html.escape(self.text)}</span>'
        )
        self.widget.layout.display = None

    def clear(self) -> None:
        self.text = ""
        self.widget.value = ""
        self.widget.layout.display = "none"


class AnswerView(w.HTMLMath):  # type: ignore[misc]
    """One answer, its Markdown rendered to sanitized HTML the same way as ``%%llm``'s
    answers, shown through the ``value`` trait.

    A value trait rather than an ``Output`` widget's outputs: every frontend (VS Code's
    notebook renderer included) syncs a trait, while outputs set or updated from a callback
    are not shown everywhere. The frontend inserts ``value`` as HTML, so only the sanitized
    HTML of :func:`answer_bundle` ever goes there, never the model's text itself.
    """

    #: JupyterLab's and Notebook 7's classes for rendered HTML in an output area, so an
    #: answer looks like ``%%llm``'s (headings, links, tables); other frontends ignore them.
    RENDERED_CLASSES = ("jp-RenderedHTMLCommon", "jp-OutputArea-output")

    def __init__(self, *classes: str) -> None:
        super().__init__()
        styled(self, *self.RENDERED_CLASSES, *classes)
        self.layout.width = "auto"  # the panel's width, margins included
        #: The answer as plain text, as last shown (for tests and the saved transcript).
        self.text = ""

    def show(self, record: ChatResponse, *, final: bool, note: str | None = None) -> None:
        """Show ``record``'s answer so far (the waiting mark before its first token)."""
        bundle: Bundle
        if record.text or record.reasoning or final:
            bundle = answer_bundle(record.text, "markdown", reasoning=record.reasoning, note=note)
        else:
            bundle = {"text/plain": "…"}  # the footer under it says what it waits for
        self.text = str(bundle["text/plain"])
        shown = bundle.get("text/html")
        self.value = shown if shown is not None else f"<span>{html.escape(self.text)}</span>"


class Panel(w.VBox):  # type: ignore[misc]
    """A VBox that, when displayed, also leaves a saved output under itself (see _saved)."""

    def __init__(self, children: list[Any], *classes: str) -> None:
        self.saved = SavedOutput()
        # The rule that hides the saved copy while this panel is drawn (see _saved): a
        # <style> in an HTML view applies to the page even though the view itself is hidden.
        self.saved_rule = styled(
            w.HTML(f"<style>{self.saved.hiding_rule()}</style>"), "llm-nb-saved-rule"
        )
        self.saved_rule.layout.display = "none"
        super().__init__([*children, self.saved_rule])
        styled(self, "llm-nb-panel", *classes)

    def _ipython_display_(self) -> None:
        ipython_display()(widget_bundle(self), raw=True)
        self.saved.show()
