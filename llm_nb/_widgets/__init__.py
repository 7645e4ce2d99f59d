"""Notebook panels (ipywidgets): a model picker, a chat panel and a compare panel.

``llm_nb.model_picker()``, ``llm_nb.chat_panel(model=None, conversation=None, **options)`` and
``llm_nb.compare_panel(models=None, **options)`` return the widget; display it (as a cell's
last expression or with ``display()``). Options are ``llm_nb.chat``'s (``max_tokens``,
``temperature``, ``system``, ``extra``…), checked when the panel is made.

How they work (each module's docstring has the details):

* **Where the work runs** (``_work``): a click starts the work as an asyncio task on the
  kernel's own event loop, so the callback returns at once and the kernel stays free to
  receive the next click (Stop). Widgets are only ever updated from that one thread. Without
  a running loop (a script, a synchronous test) the work runs on llm_nb's private loop while
  the caller waits, and widget updates are handed back to the caller's thread.
* **Throttled drawing**: a streaming answer is redrawn at most once per
  ``LLMMagics.throttle_s`` (0.1 s by default, so ≤ 10 updates a second) plus once at the
  end, whatever the token rate, like ``%%llm``.
* **Saved answers** (``_saved``): widget state is not saved with a notebook, so each panel
  also leaves an ordinary output under itself, updated through its display id with the
  finished answers (sanitized HTML, as every answer is shown). That output is what a saved or
  converted notebook shows; while the live panel is drawn, a style rule it carries hides the
  copy, so each answer appears once.
* **Default model** (``_defaults``): selecting a model in the picker sets
  ``LLMMagics.default_model`` on the loaded extension, and in the shell's config so that a
  later ``%load_ext llm_nb`` picks it up; the panels use the same default.

Stable CSS classes (for styling and browser tests); every panel's outer box has
``llm-nb-panel`` and every one-line error ``llm-nb-error`` (hidden when there is none). The
saved copy under a panel is a ``llm-nb-saved`` block; the hidden ``llm-nb-saved-rule``
inside the panel holds the style rule that hides that copy while the panel is drawn.

Model picker ``llm-nb-picker``:
    ``-refresh`` (button) · ``-default`` (the line naming ``%%llm``'s default model) ·
    ``-groups`` (the servers), each a ``-group`` holding ``-group-title`` and either
    ``-models`` (a Select; option labels "name — status · size · quantization") or
    ``-group-error`` · buttons ``-load``, ``-unload``, ``-delete`` (asks "Really delete?"
    first), ``-pull`` with the box ``-pull-name`` · ``-progress`` holding ``-progress-bar``
    and ``-progress-label`` · ``-error``.
Chat panel ``llm-nb-chat``:
    ``-model`` (model id box; empty: the default model) · ``-history`` (the conversation),
    one ``-turn`` per exchange holding ``-user`` (the prompt), ``-model-label``, ``-answer``
    (streams live, Markdown) and ``-figures`` (ttft, tokens/s, tokens, cost) · ``-prompt`` ·
    buttons ``-send``, ``-stop``, ``-reset`` · ``-error``.
Compare panel ``llm-nb-compare``:
    ``-models`` (multi-select) · ``-refresh`` · ``-prompt`` · buttons ``-run``, ``-stop`` ·
    ``-error`` · ``-columns``, one ``-col`` per model holding ``-title``, ``-answer`` and
    ``-figures`` · ``-stats`` (the run's table, HTML) · ``-plot`` holding ``-plot-image``,
    or ``-plot-note`` without matplotlib.

(``-x`` abbreviates the panel's prefix: ``llm-nb-chat-stop``, ``llm-nb-compare-col``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from .._options import ChatKwargs, takes_chat_options
from ._chat import ChatPanel
from ._compare import ComparePanel
from ._defaults import default_model, set_default_model
from ._picker import ModelPicker

__all__ = [
    "ChatPanel",
    "ComparePanel",
    "ModelPicker",
    "chat_panel",
    "compare_panel",
    "default_model",
    "model_picker",
    "set_default_model",
]


def model_picker() -> ModelPicker:
    """Every known server's models, grouped by server, with their status; selecting one makes
    it the default of ``%%llm``; load, unload, pull (with progress) and delete."""
    return ModelPicker()


@takes_chat_options
def chat_panel(
    model: str | None = None,
    *,
    conversation: str | None = None,
    throttle_s: float | None = None,
    **options: Unpack[ChatKwargs],
) -> ChatPanel:
    """A multi-turn chat with ``model`` (default: the default model): Send, Stop, the answer
    streaming live as Markdown, and its figures.

    ``conversation``: a name under which the chat is kept in the call log, like
    ``%%llm --chat NAME`` (the same conversations, listed by ``llm_nb.conversations()``). A
    panel with that name, in this kernel or after a restart, shows the earlier turns and
    sends them as history; only turns whose answer completed are kept, and New chat forgets
    them. None (the default): the chat lives in this panel only."""
    return ChatPanel(model, conversation=conversation, throttle_s=throttle_s, **options)


@takes_chat_options
def compare_panel(
    models: Sequence[str] | None = None,
    *,
    throttle_s: float | None = None,
    **options: Unpack[ChatKwargs],
) -> ComparePanel:
    """One prompt to several models: answers stream side by side, then the run's stats table
    and a plot of ttft and tokens/s."""
    return ComparePanel(models, throttle_s=throttle_s, **options)
