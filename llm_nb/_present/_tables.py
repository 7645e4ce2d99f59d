"""The stats table shown under side-by-side answers (a ``%%llm`` cell with several models,
the compare panel): the run's calls, a few key columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: The stats table under side-by-side answers.
STATS_COLUMNS = [
    "provider", "host", "model", "status", "ttft_s", "output_tps", "completion_tokens",
    "e2e_s", "cost_usd",
]  # fmt: skip


def run_table(run_id: str) -> pd.DataFrame | None:
    """The run's calls in :data:`STATS_COLUMNS`; None when nothing was recorded (recording
    is off: ``LLM_NB_RECORD=0``)."""
    from .._session import stats

    frame = stats(run_id)
    if not len(frame):
        return None
    return frame[STATS_COLUMNS]


def short_float(value: float) -> str:
    return f"{value:.4g}"


def show_run_table(run_id: str, rich: bool) -> None:
    """Display the run's table under a cell's answers (printed in full in a terminal)."""
    from ._display import ipython_display

    frame = run_table(run_id)
    if frame is None:
        return
    if rich:
        ipython_display()(frame)
    else:
        # A terminal's DataFrame repr elides columns to fit; this table is the point.
        print(frame.to_string(index=False, float_format=short_float))
