"""One model's call as the presentation layer follows it: its stream, and how it ended.

A ``%%llm`` cell, the chat panel and the compare panel all hold their answers as
:class:`Call` objects, fill them through the one runner (``_runner``) and draw them with the
same figures and notes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._stream import ChatStream
    from .._types import ChatResponse


@dataclass(eq=False)
class Call:
    """One model's call: the label shown for it, its stream, and how it ended."""

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


def settle(calls: Sequence[Call]) -> None:
    """Mark every call ended, and the ones that were stopped as interrupted and cancelled.

    A stream stopped by a cancel has recorded ``cancelled`` itself; a task cancelled before
    its first step never ran the stream, so nothing recorded it and its end is unset.
    """
    for call in calls:
        record = call.record
        if record.trace.t_end_ns is None or record.status == "cancelled":
            call.interrupted = True
            record.status = "cancelled"
        call.done = True


def column_labels(models: Sequence[str]) -> list[str]:
    """The label of each model's column: its id, numbered (``id #1``, ``id #2``) where the
    same id is asked more than once, so every column, footer, table row and plot bar can be
    told apart."""
    counts: dict[str, int] = {}
    for model in models:
        counts[model] = counts.get(model, 0) + 1
    seen: dict[str, int] = {}
    labels = []
    for model in models:
        if counts[model] == 1:
            labels.append(model)
            continue
        seen[model] = seen.get(model, 0) + 1
        labels.append(f"{model} #{seen[model]}")
    return labels
