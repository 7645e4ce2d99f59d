"""Readable tables of llm_nb's frames, as HTML and as text: a few key columns, units in the
headers, three significant figures, integers as integers, "—" for a missing value, no index.

Only the display changes: the frames the API returns keep every column, numeric. A frame
shown this way is a :class:`ShownFrame`, a pandas DataFrame whose own display is the table
(anything derived from it, a slice or a copy, is a plain DataFrame again).

The HTML uses JupyterLab's rendered-HTML classes, so a table looks like a DataFrame's in an
output area and in a widget alike; everything else is inline style (an output cannot scope a
style sheet). Cell text is data from servers (model names) and is escaped, attributes
included. Column labels and units follow the names and definitions of docs/METRICS.md.

This module imports pandas: import it only where a frame is shown, not at package import.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from ._safe_html import escape
from ._units import count, header, sig3

MISSING = "—"
#: Rows a table shows; a longer frame shows its last calls (or first rows) and says so.
MAX_ROWS = 60
#: A text cell longer than this is cut with "…" in the text form (the HTML cuts by width).
TEXT_WIDTH = 64

#: The default columns of each table (those the frame has), in order. ``model_id`` is the
#: model as a user writes it, ``provider:model@host`` (one column, unique per server);
#: ``label`` is an answer's column title.
CALLS = ("started_at", "model_id", "status", "finish_reason", "ttft_s", "output_tps",
         "prompt_tokens", "completion_tokens", "e2e_s", "cost_usd")  # fmt: skip
ANSWERS = ("label", "status", "finish_reason", "ttft_s", "output_tps", "completion_tokens",
           "e2e_s", "cost_usd")  # fmt: skip
SUMMARY = ("run_id", "model_id", "n_ok", "n_error", "n_cancelled", "ttft_s_p50", "ttft_s_p95",
           "output_tps_mean", "e2e_s_p50", "output_tokens", "cost_usd")  # fmt: skip
EVAL = ("model_id", "n", "n_ok", "n_error", "ttft_s_p50", "output_tps_mean", "e2e_s_p50",
        "cost_usd")  # fmt: skip


# -- formatting one value ------------------------------------------------------------------


def is_missing(value: Any) -> bool:
    if value is None or (isinstance(value, str) and not value.strip()):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or other container in a cell
        return False


def percent(value: Any) -> str:
    return sig3(float(value) * 100)


def clock(value: Any) -> str:
    """A call's start as UTC time of day (the frame keeps the full timestamp)."""
    if isinstance(value, datetime):
        stamp = value.astimezone(UTC) if value.tzinfo else value
        return stamp.strftime("%H:%M:%S")
    return str(value)


def plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return count(value) if value.is_integer() and abs(value) < 1e15 else sig3(value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "fc":
        return plain(float(value))
    return str(value)


@dataclass(frozen=True, slots=True)
class Column:
    """How one column shows: its header (unit included), a formatter for present values,
    and whether it is text (left-aligned, cut when too wide) or a number (right-aligned)."""

    name: str
    label: str
    fmt: Callable[[Any], str]
    text: bool = False


#: Columns whose label is not derived from their name by the rules in :func:`column`.
_LABELS: dict[str, tuple[str, Callable[[Any], str], bool]] = {
    "started_at": ("started (UTC)", clock, True),
    "model_id": ("model", str, True),
    "label": ("model", str, True),
    "finish_reason": ("finish", str, True),
    "finish_reason_raw": ("finish (raw)", str, True),
    "completion_tokens": (header("completion_tokens"), count, False),
    "output_tokens": (header("completion_tokens"), count, False),
    "n_ok": ("ok", count, False),
    "n_error": ("errors", count, False),
    "n_cancelled": ("stopped", count, False),
    "n": ("cells", count, False),
    "error_rate": ("error rate (%)", percent, False),
    "output_tps": (header("output_tps"), sig3, False),
    "srv_output_tps": ("server tokens/s", sig3, False),
    "throughput_tps": ("throughput (tokens/s)", sig3, False),
    "energy_j_per_token": ("energy (J/token)", sig3, False),
    "cost_usd": (header("cost_usd"), sig3, False),
    "host_ram_gb": ("host RAM (GB)", sig3, False),
    "host_cores": ("host cores", count, False),
    "n_ctx": ("n_ctx", count, False),
}
#: Durations, in seconds as in the frame (and as the footers say them: docs/METRICS.md's
#: unit everywhere a person reads the figure).
_SECONDS = {"queue_s": "queue", "ttfb_s": "TTFB", "ttft_s": "TTFT", "ttfo_s": "TTFO",
            "tpot_s": "TPOT", "gap_p50_s": "gap p50", "gap_p95_s": "gap p95",
            "gap_max_s": "gap max", "e2e_s": "E2E", "decode_s": "decode"}  # fmt: skip
#: Summary statistics: ``<metric>_<stat>`` (docs/METRICS.md's summary columns).
_STAT = re.compile(r"^(?P<metric>[a-z0-9_]+?)_(?P<stat>mean|p50|p90|p95|p99|max)$")
#: Units by name suffix, for the per-call columns that carry one.
_SUFFIXES = (("_ms", "ms", sig3), ("_pct", "%", sig3), ("_mb", "MB", sig3),
             ("_w", "W", sig3), ("_j", "J", sig3))  # fmt: skip
_COUNTS = re.compile(r"^(n_\w+|\w+_tokens|srv_\w+_n|chars)$")


def column(name: str) -> Column:
    """How ``name`` shows: its label with its unit, and its formatter."""
    if name in _LABELS:
        label, fmt, text = _LABELS[name]
        return Column(name, label, fmt, text)
    if name in _SECONDS:
        return Column(name, f"{_SECONDS[name]} (s)", sig3)
    stat = _STAT.match(name)
    if stat and stat["metric"] in (*_SECONDS, "output_tps"):
        base = column(stat["metric"])
        head, _, unit = base.label.partition(" (")
        label = f"{head} {stat['stat']}" + (f" ({unit}" if unit else "")
        return Column(name, label, base.fmt)
    if name.startswith("score_"):
        return Column(name, f"score: {name[len('score_') :]}", sig3)
    if _COUNTS.match(name):
        label = f"{name[: -len('_tokens')]} tokens" if name.endswith("_tokens") else name
        return Column(name, label, count)
    for suffix, unit, fmt in _SUFFIXES:
        if name.endswith(suffix):
            return Column(name, f"{name[: -len(suffix)]} ({unit})", fmt)
    return Column(name, name, plain)


# -- one table -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Table:
    """A table as HTML (``html``) and as aligned text (``text``); displays as both."""

    html: str
    text: str

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> dict[str, str]:  # IPython's display protocol
        return {"text/html": self.html, "text/plain": self.text}

    def __str__(self) -> str:
        return self.text


_TEXT_CELL = "text-align:left;white-space:nowrap"
_NUMBER_CELL = "text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums"
#: A text cell longer than this many characters may be cut at :data:`_CUT`'s width with an
#: ellipsis, its title holding the whole value (a hostile or generated id can be any length).
_LONG = 56
_CUT = (
    "display:inline-block;max-width:40em;overflow:hidden;text-overflow:ellipsis;"
    "vertical-align:bottom"
)
_NOTE = "color:var(--jp-ui-font-color2, #616161);font-size:var(--jp-ui-font-size0, 0.85em);"


def render(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    note: str = "",
    last: bool = False,
) -> Table:
    """``frame`` as a :class:`Table`: ``columns`` (those the frame has; default all), at most
    :data:`MAX_ROWS` rows (the last ones when ``last``, else the first), and ``note`` under
    it (plain text: it is escaped)."""
    names = [c for c in (columns if columns is not None else frame.columns) if c in frame]
    specs = [_typed(column(str(name)), frame[name]) for name in names]
    shown = frame.tail(MAX_ROWS) if last else frame.head(MAX_ROWS)
    notes = []
    if len(shown) < len(frame):
        which = "last" if last else "first"
        notes.append(f"the {which} {len(shown)} of {len(frame):,} rows")
    if note:
        notes.append(note)
    cells = [
        [MISSING if is_missing(v) else spec.fmt(v) for v in shown[spec.name].tolist()]
        for spec in specs
    ]
    rows: list[tuple[str, ...]] = [tuple(row) for row in zip(*cells, strict=True)]
    footer = "; ".join(notes)
    return Table(_html(specs, rows, footer), _text(specs, rows, footer))


def _typed(spec: Column, values: pd.Series) -> Column:
    """A column without a known kind is text unless its values are numbers or bools."""
    if spec.text or spec.fmt is not plain:
        return spec
    numeric = pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)
    return spec if numeric else Column(spec.name, spec.label, spec.fmt, text=True)


def _html(specs: list[Column], rows: list[tuple[str, ...]], footer: str) -> str:
    head = "".join(
        f'<th style="{_TEXT_CELL if s.text else _NUMBER_CELL}">{escape(s.label)}</th>'
        for s in specs
    )
    body = []
    for row in rows:
        tds = []
        for spec, value in zip(specs, row, strict=True):
            if spec.text and len(value) > _LONG:
                cell = f'<span style="{_CUT}" title="{escape(value)}">{escape(value)}</span>'
                tds.append(f'<td style="{_TEXT_CELL}">{cell}</td>')
            elif spec.text:
                tds.append(f'<td style="{_TEXT_CELL}">{escape(value)}</td>')
            else:
                tds.append(f'<td style="{_NUMBER_CELL}">{escape(value)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    note = f'<div style="{_NOTE}">{escape(footer)}</div>' if footer else ""
    return (
        '<div class="llm-nb-scroll jp-RenderedHTMLCommon" style="overflow-x:auto;'
        'max-width:100%;padding:0;margin:0">'
        f'<table class="llm-nb-table" style="margin:0 0 0.25em 0"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>{note}</div>"
    )


def _text(specs: list[Column], rows: list[tuple[str, ...]], footer: str) -> str:
    def cut(value: str) -> str:
        value = " ".join(value.split())  # no line break or tab inside a cell
        return value if len(value) <= TEXT_WIDTH else value[: TEXT_WIDTH - 1] + "…"

    grid = [[cut(s.label) for s in specs], *[[cut(v) for v in row] for row in rows]]
    widths = [max(len(line[i]) for line in grid) for i in range(len(specs))]
    lines = [
        "  ".join(
            v.ljust(w) if s.text else v.rjust(w)
            for s, v, w in zip(specs, line, widths, strict=True)
        ).rstrip()
        for line in grid
    ]
    if footer:
        lines.append(footer)
    return "\n".join(lines)


# -- the tables llm_nb shows ---------------------------------------------------------------


def key_columns(frame: pd.DataFrame, defaults: Sequence[str]) -> list[str]:
    """``defaults`` that ``frame`` has; ``run_id`` only when it holds more than one run, and
    every score column of an evaluation after its model."""
    names = [c for c in defaults if c in frame]
    if "run_id" in names and frame["run_id"].nunique(dropna=False) <= 1:
        names.remove("run_id")
    scores = [str(c) for c in frame.columns if str(c).startswith("score_")]
    if scores and "model_id" in names:
        at = names.index("model_id") + 1
        names[at:at] = [s for s in scores if s not in names]
    return names


def _columns_note(shown: int, total: int, hint: str) -> str:
    return f"{shown} of {total} columns; all of them: {hint}" if shown < total else ""


def with_model_id(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``model_id`` column, ``provider:model@host``, when it has the parts
    (a copy: the frame the API returned is left as it is)."""
    if "model_id" in frame or not {"provider", "model", "host"} <= set(frame.columns):
        return frame
    ids = [
        f"{p}:{m}" + (f"@{h}" if isinstance(h, str) and h else "")
        for p, m, h in zip(frame["provider"], frame["model"], frame["host"], strict=True)
    ]
    return frame.assign(model_id=ids)


def answers_frame(
    frame: pd.DataFrame, call_ids: Sequence[str], labels: Sequence[str]
) -> pd.DataFrame | None:
    """The rows of ``call_ids`` (one per answer) in the answers' order, each with its
    answer's ``label``. None when none of them was recorded (recording is off)."""
    by_id = {cid: i for i, cid in enumerate(frame["call_id"].tolist())}
    order = [(by_id[cid], label) for cid, label in zip(call_ids, labels, strict=True)
             if cid in by_id]  # fmt: skip
    if not order:
        return None
    rows = frame.iloc[[i for i, _ in order]].reset_index(drop=True)
    return rows.assign(label=[label for _, label in order])


def answers_table(
    frame: pd.DataFrame, call_ids: Sequence[str], labels: Sequence[str]
) -> Table | None:
    """The table under side-by-side answers: one row per answer, in the answers' order, its
    ``model`` cell the answer's label. None when no answer was recorded (recording off)."""
    rows = answers_frame(frame, call_ids, labels)
    return None if rows is None else render(rows, ANSWERS)


def eval_table(summary: pd.DataFrame, note: str = "") -> Table:
    """An evaluation's summary: per model its scores, cells and key figures."""
    names = key_columns(summary, EVAL)
    extra = _columns_note(len(names), len(summary.columns), "the result's .summary")
    return render(summary, names, note="; ".join(n for n in (extra, note) if n))


@dataclass(frozen=True, slots=True)
class View:
    """Which table a :class:`ShownFrame` draws: its default columns (None: every column),
    whether a long frame shows its last rows, and where all the columns are."""

    columns: tuple[str, ...] | None
    last: bool = False
    hint: str = ""

    def table(self, frame: pd.DataFrame) -> Table:
        if self.columns is None:
            return render(frame, last=self.last)
        shown = with_model_id(frame)
        names = key_columns(shown, self.columns)
        note = _columns_note(len(names), len(frame.columns), self.hint)
        return render(shown, names, note=note, last=self.last)


#: ``%llm_stats``: the calls; ``llm_nb.summary()`` and ``%llm_stats --summary``: per model.
CALLS_VIEW = View(CALLS, last=True, hint="%llm_stats --all, or llm_nb.stats()")
SUMMARY_VIEW = View(SUMMARY, hint="%llm_stats --summary --all, or pandas.DataFrame(frame)")
ALL_CALLS_VIEW = View(None, last=True)
ALL_VIEW = View(None)


class ShownFrame(pd.DataFrame):
    """A DataFrame whose display is a readable table (its :class:`View`); its data is the
    whole frame, every column, as numbers. Derived frames are plain DataFrames."""

    # pandas' documented way for a subclass to keep an attribute (see "Subclassing pandas
    # data structures"): set without pandas taking it for a new column.
    _metadata = ["table_view"]  # noqa: RUF012  (pandas reads this class attribute)
    table_view: View

    def _repr_html_(self) -> str:
        return self.table_view.table(self).html

    def __repr__(self) -> str:
        return self.table_view.table(self).text


def shown(frame: pd.DataFrame, view: View) -> ShownFrame:
    """``frame`` (the same data, not a copy of its values) displayed as ``view``'s table."""
    out = ShownFrame(frame)
    out.table_view = view
    return out
