"""Stats tables as a person reads them: a few key columns, units in the headers, three
significant figures, integers as integers, "—" for missing, no index, ids kept on one line.

Only the display changes: every :class:`Table` keeps the complete numeric DataFrame it was
made from in ``.frame`` (``%llm_stats --all`` returns that frame itself, as ``llm_nb.stats()``
does). The HTML is a plain ``<table>``, which JupyterLab and Notebook 7 style as they style a
DataFrame; every cell's text is escaped (model names and finish reasons come from servers).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ._calls import Call

MISSING = "—"


@dataclass(frozen=True, slots=True)
class Column:
    """One shown column: the frame's column, its header (with the unit) and its kind."""

    key: str
    header: str
    kind: str = "number"  # number · count · text · time


#: ``%llm_stats``: one row per call.
CALL_COLUMNS = (
    Column("started_at", "started (UTC)", "time"),
    Column("model_id", "model", "text"),
    Column("status", "status", "text"),
    Column("finish_reason", "finish", "text"),
    Column("ttft_s", "ttft (s)"),
    Column("output_tps", "tok/s"),
    Column("prompt_tokens", "prompt tok", "count"),
    Column("completion_tokens", "output tok", "count"),
    Column("e2e_s", "total (s)"),
    Column("cost_usd", "cost ($)"),
)

#: ``%llm_stats --summary``: one row per model.
SUMMARY_COLUMNS = (
    Column("model_id", "model", "text"),
    Column("n_ok", "ok", "count"),
    Column("n_error", "errors", "count"),
    Column("n_cancelled", "stopped", "count"),
    Column("ttft_s_p50", "ttft p50 (s)"),
    Column("ttft_s_p90", "ttft p90 (s)"),
    Column("output_tps_p50", "tok/s p50"),
    Column("e2e_s_p50", "total p50 (s)"),
    Column("output_tokens", "output tok", "count"),
    Column("cost_usd", "cost ($)"),
)

#: Under side-by-side answers: one row per column, labelled as the column is.
RUN_COLUMNS = (
    Column("label", "model", "text"),
    Column("status", "status", "text"),
    Column("finish_reason", "finish", "text"),
    Column("ttft_s", "ttft (s)"),
    Column("output_tps", "tok/s"),
    Column("completion_tokens", "output tok", "count"),
    Column("e2e_s", "total (s)"),
    Column("cost_usd", "cost ($)"),
)

_NOWRAP = "white-space:nowrap"


def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or other container: present
        return False


def three_figures(value: float) -> str:
    """``value`` to three significant figures, without an exponent from 0.0001 up."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 2:
        return f"{round(value, 2 - magnitude):,.0f}"
    if magnitude >= -4:
        return f"{value:.{2 - magnitude}f}"
    return f"{value:.2e}"


def cell_text(value: Any, kind: str) -> str:
    if missing(value):
        return MISSING
    if kind == "count":
        return f"{int(value):,}"
    if kind == "number":
        return three_figures(float(value))
    if kind == "time":
        return value.strftime("%H:%M:%S") if hasattr(value, "strftime") else str(value)
    return str(value)


class Table:
    """A stats frame shown readably; ``.frame`` is the complete frame."""

    def __init__(self, frame: pd.DataFrame, columns: Sequence[Column]) -> None:
        self.frame = frame
        shown = _with_model_id(frame)
        self.columns = [c for c in columns if c.key in shown.columns]
        self.rows = [
            [cell_text(value, c.kind) for c, value in zip(self.columns, row, strict=True)]
            for row in shown[[c.key for c in self.columns]].itertuples(index=False)
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def html(self) -> str:
        head = "".join(
            f'<th style="{_NOWRAP};text-align:{_align(c)}">{html.escape(c.header)}</th>'
            for c in self.columns
        )
        body = "".join(
            "<tr>"
            + "".join(
                f'<td style="{_NOWRAP};text-align:{_align(c)}">{html.escape(text)}</td>'
                for c, text in zip(self.columns, row, strict=True)
            )
            + "</tr>"
            for row in self.rows
        )
        # Ids stay on one line, so a narrow cell scrolls the table rather than the page.
        return (
            '<div class="llm-nb-scroll" style="overflow-x:auto;max-width:100%">'
            f'<table class="llm-nb-table"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>"
        )

    def text(self) -> str:
        """Aligned plain text (numbers right, words left), for terminals and text/plain."""
        grid = [[c.header for c in self.columns], *self.rows]
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.columns))]
        lines = []
        for row in grid:
            cells = [
                t.rjust(w) if _align(c) == "right" else t.ljust(w)
                for c, t, w in zip(self.columns, row, widths, strict=True)
            ]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.text())


def _align(column: Column) -> str:
    return "left" if column.kind in ("text", "time") else "right"


def _with_model_id(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with ``model_id`` ("provider:model@host"), as the user writes a model."""
    if not {"provider", "model", "host"} <= set(frame.columns) or "model_id" in frame.columns:
        return frame
    ids = [
        f"{p}:{m}" + (f"@{h}" if isinstance(h, str) and h else "")
        for p, m, h in zip(frame["provider"], frame["model"], frame["host"], strict=True)
    ]
    return frame.assign(model_id=ids)


def run_frame(calls: Sequence[Call], run_id: str) -> pd.DataFrame | None:
    """The stats rows of ``calls`` (one run), in column order, with each column's label;
    None when nothing was recorded (recording is off: ``LLM_NB_RECORD=0``)."""
    from .._session import stats

    frame = stats(run_id)
    if not len(frame):
        return None
    position = {call.record.call_id: i for i, call in enumerate(calls)}
    labels = {call.record.call_id: call.label for call in calls}
    frame = frame[frame["call_id"].isin(position)]
    order = sorted(range(len(frame)), key=lambda i: position[frame["call_id"].iloc[i]])
    frame = frame.iloc[order].reset_index(drop=True)
    return frame.assign(label=[labels[c] for c in frame["call_id"]])


def show_run_table(calls: Sequence[Call], run_id: str, rich: bool) -> None:
    """Display the run's table under a cell's side-by-side answers."""
    from ._display import ipython_display

    frame = run_frame(calls, run_id)
    if frame is None:
        return
    table = Table(frame, RUN_COLUMNS)
    if rich:
        ipython_display()({"text/html": table.html(), "text/plain": table.text()}, raw=True)
    else:
        print(table.text())
