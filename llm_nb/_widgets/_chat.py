"""The chat panel: a prompt box, Send and Stop, and the conversation with answers streaming
in live as Markdown (rendered and sanitized by ``llm_nb._safe_html``), each followed by its
figures (time to first token, tokens/s, tokens).

Each Send continues the conversation: the model gets every earlier turn as messages. A turn
that was stopped keeps its partial answer, on screen and in the conversation; a turn that
failed shows its error on one line and is left out of the conversation, so Send retries it.

A panel given a ``conversation`` name continues the session's conversation of that name, the
one ``%%llm --chat NAME`` continues too (``llm_nb._chats``; a turn asked in either is history
for the next in both), kept in the call log: a new panel with that name, in this kernel or
after a restart, shows the earlier turns and sends them as history, and
``llm_nb.conversations()`` lists it. As with ``%%llm --chat``, only a turn whose answer
completed is kept in it (a stopped one stays on screen); New chat forgets the conversation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ipywidgets as w  # type: ignore[import-untyped]

from .._api import provider
from .._errors import InvalidOptionError, LLMError
from .._options import ChatOptions
from .._present._calls import Call
from .._present._display import RenderBudget
from .._present._figures import figures, live_figures
from .._present._runner import Frames, pump
from .._present._work import Post, Worker
from .._safe_html import answer_html, escape
from .._types import ChatResponse, Message
from ._defaults import default_model, throttle_s
from ._parts import AnswerView, ErrorLine, Panel, fill_width, styled
from ._prompt import focus, prompt_box

if TYPE_CHECKING:
    from .._chats import Conversations


@dataclass(eq=False)
class Turn:
    """One prompt and its answer."""

    prompt: str
    model: str
    call: Call
    answer: AnswerView
    figures: Any  # ipywidgets.Label
    #: The turn's live frames, then its one final frame.
    frames: Frames = field(init=False)
    #: (HTML, plain text) for the saved output, once the turn has ended.
    saved: tuple[str, str] | None = None

    @property
    def record(self) -> ChatResponse:
        return self.call.record

    @property
    def note(self) -> str | None:
        if self.call.interrupted:
            return "stopped"
        return "error" if self.call.error is not None else None


class ChatPanel(Panel):
    """See :func:`chat_panel`."""

    def __init__(
        self,
        model: str | None = None,
        *,
        conversation: str | None = None,
        throttle_s: float | None = None,
        **options: Any,
    ) -> None:
        ChatOptions.from_kwargs(**options)  # a bad option fails here, not on first Send
        if conversation is not None and (
            not isinstance(conversation, str) or not conversation.strip()
        ):
            raise InvalidOptionError(
                f"conversation={conversation!r}: give a non-empty name, or None for a chat "
                "that is not stored"
            )
        self.options = options
        #: The stored conversation's name (None: this panel's chat is not stored).
        self.conversation = conversation
        self._throttle_s = throttle_s
        self.model = styled(
            w.Text(
                value=model or "",
                description="model",
                placeholder=_placeholder(),
                layout=fill_width(),
            ),
            "llm-nb-chat-model",
        )
        self.history = styled(w.VBox(), "llm-nb-chat-history")
        self.prompt = styled(
            prompt_box(
                "Ask something… (Shift+Enter sends, Escape stops)",
                on_submit=self.send,
                on_stop=self.stop,
                layout=fill_width(),
            ),
            "llm-nb-chat-prompt",
        )
        self.send_button = styled(
            w.Button(description="Send", button_style="primary", icon="paper-plane"),
            "llm-nb-chat-send",
        )
        self.stop_button = styled(
            w.Button(description="Stop", icon="stop", disabled=True), "llm-nb-chat-stop"
        )
        self.reset_button = styled(w.Button(description="New chat"), "llm-nb-chat-reset")
        self.error = ErrorLine("llm-nb-chat-error")
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        self.reset_button.on_click(lambda _: self.reset())
        buttons = w.HBox([self.send_button, self.stop_button, self.reset_button])
        super().__init__(
            [self.model, self.history, self.prompt, buttons, self.error.widget], "llm-nb-chat"
        )
        #: Every turn shown, oldest first; ``messages`` is what the model is sent.
        self.turns: list[Turn] = []
        self.messages: list[Message] = []
        #: Turns in the order asked, with None where a new chat began and (HTML, plain text)
        #: for a stored earlier turn (for the saved output).
        self._transcript: list[Turn | tuple[str, str] | None] = []
        self.worker = Worker(self.error.show)
        self._budget = RenderBudget()
        self._restore()

    def __repr__(self) -> str:
        return "llm_nb chat panel (a live widget; finished answers are saved in the output below)"

    # -- actions --------------------------------------------------------------------------

    def send(self, prompt: str | None = None) -> None:
        """Send ``prompt`` (default: the prompt box) and stream the answer in."""
        if prompt is not None:
            self.prompt.value = prompt
        text = self.prompt.value.strip()
        if self.worker.busy:
            self.error.show("an answer is still streaming; Stop it first")
            return
        if not text:
            self.error.show("write a prompt first")
            return
        model = self.model.value.strip() or default_model()
        try:
            p, name = provider(model)
            if self.conversation is not None:  # what a %%llm --chat cell added counts too
                self.messages = _shared().history(self.conversation)
            stream = p.stream(name, [*self.messages, Message("user", text)], **self.options)
        except LLMError as exc:
            self.error.show(exc)
            return
        self.error.clear()
        self.prompt.value = ""
        turn = self._add_turn(text, model, Call(model, stream))
        self._streaming(True)
        self.worker.start(lambda post: self._answer(turn, post), lambda: self._ended(turn))
        focus(self.prompt)

    def stop(self) -> None:
        """Stop the answer streaming now; what arrived stays."""
        self.worker.stop()

    def reset(self) -> None:
        """Start a new conversation (the saved output keeps the old one)."""
        self.worker.stop()
        self.messages = []
        self.turns = []
        self.history.children = ()
        if self._transcript:
            self._transcript.append(None)
        self.error.clear()
        if self.conversation is not None:
            _shared().reset(self.conversation)

    async def wait(self) -> None:
        """Until the answer being streamed has ended."""
        await self.worker.wait()

    @property
    def answer(self) -> Any:
        """The :class:`AnswerView` of the latest answer (None before the first Send)."""
        return self.turns[-1].answer if self.turns else None

    # -- the stored conversation ----------------------------------------------------------

    def _restore(self) -> None:
        """Show and continue the stored turns of ``conversation``."""
        if self.conversation is None:
            return
        messages = _shared().history(self.conversation)
        asked: str | None = None
        boxes = []
        for m in messages:
            if m.role == "user":
                asked = m.content
            elif m.role == "assistant" and asked is not None:
                boxes.append(self._earlier_turn(asked, m.content))
                asked = None
        self.messages = list(messages)
        self.history.children = tuple(boxes)
        self._save()

    def _earlier_turn(self, prompt: str, answer: str) -> Any:
        """A stored turn, shown like a live one (its answer sanitized the same way)."""
        where = f"earlier in {self.conversation}"
        label = styled(w.HTML(f"<i>{escape(where)}</i>"), "llm-nb-chat-model-label")
        view = AnswerView("llm-nb-chat-answer")
        view.value = answer_html(answer)
        view.text = answer
        shown = styled(w.Label(""), "llm-nb-chat-figures")
        asked = styled(w.HTML(_prompt_html(prompt)), "llm-nb-chat-user")
        self._transcript.append(
            (_prompt_html(prompt) + answer_html(answer), f"You: {prompt}\n{where}: {answer}")
        )
        return styled(w.VBox([asked, label, view, shown]), "llm-nb-chat-turn")

    # -- drawing --------------------------------------------------------------------------

    def _add_turn(self, text: str, model: str, call: Call) -> Turn:
        asked = styled(w.HTML(_prompt_html(text)), "llm-nb-chat-user")
        label = styled(w.HTML(f"<b>{escape(model)}</b>"), "llm-nb-chat-model-label")
        answer = AnswerView("llm-nb-chat-answer")
        answer.show(call.record, final=False)
        shown = styled(w.Label(""), "llm-nb-chat-figures")
        turn = Turn(text, model, call, answer, shown)
        turn.frames = Frames([call], lambda final: self._draw(turn, final))
        self.turns.append(turn)
        self._transcript.append(turn)
        box = styled(w.VBox([asked, label, answer, shown]), "llm-nb-chat-turn")
        self.history.children = (*self.history.children, box)
        return turn

    async def _answer(self, turn: Turn, post: Post) -> None:
        await pump([turn.call], turn.frames, self.throttle_s, post)

    @property
    def throttle_s(self) -> float:
        return throttle_s(self._throttle_s)

    def _draw(self, turn: Turn, final: bool) -> None:
        record = turn.record
        if not final:
            if self._budget.due(final):
                started = time.perf_counter()
                turn.answer.show(record, final=False)
                turn.figures.value = live_figures(record)
                self._budget.spent(started)
            return
        turn.answer.show(record, final=True, note=turn.note)
        turn.figures.value = str(figures(record)) if record.trace.token_times_ns else ""
        if turn.call.error is not None:
            self.error.show(turn.call.error)
            if not self.prompt.value.strip():
                self.prompt.value = turn.prompt  # what they typed is theirs: back to retry
        elif turn in self.turns and record.text and self.conversation is None:
            self.messages += [Message("user", turn.prompt), Message("assistant", record.text)]
        elif turn in self.turns and record.status == "ok" and self.conversation is not None:
            # Like ``%%llm --chat``: only a turn whose answer completed is kept.
            shared = _shared()
            shared.add_turn(self.conversation, turn.prompt, record.text, record.call_id)
            self.messages = shared.history(self.conversation)
        turn.saved = _transcript_entry(turn)
        self._save()

    def _ended(self, turn: Turn) -> None:
        turn.frames.end()  # drawn already, unless stopped before the stream even started
        self._streaming(False)

    def _streaming(self, on: bool) -> None:
        self.send_button.disabled = on
        self.stop_button.disabled = not on

    def _save(self) -> None:
        parts = [
            ("<hr>", "---") if t is None else t if isinstance(t, tuple) else t.saved
            for t in self._transcript
        ]
        done = [p for p in parts if p is not None]
        rich = "".join(h for h, _ in done)
        plain = "\n\n".join(p for _, p in done)
        self.saved.update(rich, plain)


def _shared() -> Conversations:
    """The session's named conversations, which ``%%llm --chat`` continues too."""
    from .._session import default_session

    return default_session().conversations


def _placeholder() -> str:
    return f"default: {default_model()}"


def _prompt_html(text: str) -> str:
    return (
        '<div style="white-space:pre-wrap;padding:0.3em 0.5em;border-left:3px solid '
        f'var(--jp-brand-color1,#1976d2)">{escape(text)}</div>'
    )


def _transcript_entry(turn: Turn) -> tuple[str, str]:
    """One finished turn for the saved output: the prompt, the answer, its figures."""
    record = turn.record
    note = turn.note
    shown = str(figures(record)) if record.trace.token_times_ns else ""
    rich = (
        _prompt_html(turn.prompt)
        + f"<p><strong><code>{escape(turn.model)}</code>:</strong></p>"
        + answer_html(record.text, note=note)
    )
    if turn.call.error is not None:
        rich += f"<p><code>{escape(str(turn.call.error))}</code></p>"
    if shown:
        rich += f"<p><em>{escape(shown)}</em></p>"
    plain = f"You: {turn.prompt}\n{turn.model}: {record.text}" + (f"\n[{note}]" if note else "")
    if shown:
        plain += f"\n({shown})"
    return rich, plain
