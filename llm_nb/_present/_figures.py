"""The figures under each side-by-side column: time to first token, tokens/s, tokens, cost.

Final figures are read from the call's docs/METRICS.md row (``llm_nb._stats.call_row``, which
also prices it), so a column and the stats table below it can never disagree. While a call
streams, only what is already known is shown: its first-token time and chunks so far.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._types import ChatResponse


@dataclass(frozen=True, slots=True)
class Figures:
    """docs/METRICS.md values of one call; NaN where unknown (cost of an unmetered local model)."""

    ttft_s: float
    output_tps: float
    completion_tokens: float
    cost_usd: float

    def __str__(self) -> str:
        cost = "—" if math.isnan(self.cost_usd) else f"${self.cost_usd:.6f}"
        tokens = "?" if math.isnan(self.completion_tokens) else f"{self.completion_tokens:.0f}"
        return (
            f"ttft {_num(self.ttft_s, '.2f')} s · {_num(self.output_tps, '.1f')} tok/s · "
            f"{tokens} tokens · cost {cost}"
        )


def _num(value: float, spec: str) -> str:
    return "—" if math.isnan(value) else format(value, spec)


def figures(record: ChatResponse) -> Figures:
    """The final figures of a finished call."""
    from .._stats import call_row

    row = call_row(record)
    return Figures(row["ttft_s"], row["output_tps"], row["completion_tokens"], row["cost_usd"])


def live_figures(record: ChatResponse) -> str:
    """What is known of a call still streaming."""
    t = record.trace
    if t.t_first_token_ns is None or t.t_send_ns is None:
        return "waiting for the first token…"
    ttft = (t.t_first_token_ns - t.t_send_ns) / 1e9
    return f"ttft {ttft:.2f} s · {len(t.token_times_ns)} tokens…"
