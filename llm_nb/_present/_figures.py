"""The footer under every answer: time to first token, tokens/s, tokens, how it finished, cost.

Each figure reads with the name, unit and precision of the tables' column for it
(``llm_nb._units``): "TTFT 1.26 s" over a "TTFT (s)" column showing 1.26.

Final figures are read from the call's docs/METRICS.md row (``llm_nb._stats.call_row``, which
also prices it), so a footer and the stats table below it can never disagree. An answer the
token limit ended says so ("cut at 24 tokens (-n)"), since it looks like a finished one.
While a call streams, only what is already known is shown: the wait for its first token,
then its first-token time and tokens so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._types import ChatResponse
from .._units import count, phrase, tokens

#: Seconds without a token before the waiting line says how long it has been waiting.
WAITING_NOTE_AFTER_S = 2.0


@dataclass(frozen=True, slots=True)
class Figures:
    """docs/METRICS.md values of one call; NaN where unknown (cost of an unmetered local model)."""

    ttft_s: float
    output_tps: float
    completion_tokens: float
    cost_usd: float
    #: The normalized finish reason (stop · length · tool_calls · …), if the server gave one.
    finish: str | None = None
    #: How the user set the token limit, named in "cut at N tokens (…)".
    limit: str = "max_tokens"

    def __str__(self) -> str:
        if self.finish == "length" and not math.isnan(self.completion_tokens):
            n = self.completion_tokens
            ended = f"cut at {count(n)} {tokens(n)} ({self.limit})"
        else:
            ended = phrase("completion_tokens", self.completion_tokens)
            ended += f" · {self.finish}" if self.finish else ""
        return " · ".join(
            (
                phrase("ttft_s", self.ttft_s),
                phrase("output_tps", self.output_tps),
                ended,
                phrase("cost_usd", self.cost_usd),
            )
        )


def figures(record: ChatResponse, limit: str = "max_tokens") -> Figures:
    """The final figures of a finished call; ``limit`` names its token limit's option."""
    from .._stats import call_row

    row = call_row(record)
    finish = row.get("finish_reason")
    return Figures(
        row["ttft_s"],
        row["output_tps"],
        row["completion_tokens"],
        row["cost_usd"],
        finish if isinstance(finish, str) and finish else None,
        limit,
    )


def waiting_text(waited_s: float) -> str:
    """Between sending and the first token; after a moment, for how long (loading a model or
    reading a long prompt can take minutes)."""
    if waited_s < WAITING_NOTE_AFTER_S:
        return "waiting for the first token…"
    return f"waiting for the first token… {waited_s:.0f} s"


def live_figures(record: ChatResponse, now_ns: int | None = None) -> str:
    """What is known of a call still streaming: the wait for its first token (with its
    length, after a moment), then its first-token time and the tokens so far."""
    import time

    t = record.trace
    if t.t_first_token_ns is None or t.t_send_ns is None:
        waited = 0 if t.t_send_ns is None else (now_ns or time.perf_counter_ns()) - t.t_send_ns
        return waiting_text(waited / 1e9)
    ttft = (t.t_first_token_ns - t.t_send_ns) / 1e9
    return f"{phrase('ttft_s', ttft)} · {phrase('completion_tokens', len(t.token_times_ns))}…"
