"""The readable tables (llm_nb/_tables.py): key columns, units in the headers, three
significant figures, integers as integers, "—" for missing, no index, no wrapped ids, rows in
the answers' order, hostile model names escaped; the frames themselves stay complete."""

from __future__ import annotations

import itertools
import math
import re
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from llm_nb import _tables
from llm_nb._stats import COLUMNS, call_row
from llm_nb._stats._frames import frame as calls_frame
from llm_nb._stats._frames import summary as summary_frame
from llm_nb._types import CallTrace, ChatResponse, Usage
from tests.browser.hostile import MODEL_NAME
from tests.test_render_safety import assert_inert, visible

MS = 1_000_000
_ids = itertools.count()


def record(model: str, *, ttft_ms: int = 41, tokens: int = 21, **kw: Any) -> ChatResponse:
    times = [(ttft_ms + 10 * i) * MS for i in range(tokens)]
    trace = CallTrace(
        t_send_ns=0,
        t_headers_ns=5 * MS,
        t_first_token_ns=times[0],
        t_first_answer_ns=times[0],
        t_done_ns=times[-1] + MS,
        t_end_ns=times[-1] + 2 * MS,
        token_times_ns=times,
        started_at=datetime(2026, 12, 3, 13, 4, 5, tzinfo=UTC),
    )
    r = ChatResponse(
        "llamacpp", "127.0.0.1:8080", model, text="hi", trace=trace,
        usage=Usage(12, tokens, 12 + tokens), finish_reason="stop", call_id=f"c{next(_ids)}",
    )  # fmt: skip
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def calls(*records: ChatResponse) -> pd.DataFrame:
    return calls_frame([call_row(r) for r in records])


def header(html: str) -> list[str]:
    return [visible(h) for h in re.findall(r"<th[^>]*>.*?</th>", html)]


def rows(html: str) -> list[list[str]]:
    body = html.split("<tbody>")[1].split("</tbody>")[0]
    return [
        [visible(td) for td in re.findall(r"<td[^>]*>.*?</td>", tr)]
        for tr in re.findall(r"<tr>.*?</tr>", body)
    ]


def column_of(html: str, label: str) -> list[str]:
    at = header(html).index(label)
    return [row[at] for row in rows(html)]


# -- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.041234, "0.0412"), (1.5, "1.50"), (12.345, "12.3"), (99.96, "100"),
        (1234.6, "1,230"), (999.6, "1,000"), (6388.0, "6,390"), (0.0, "0"), (-0.5, "-0.500"),
        (0.000012345, "1.23e-05"), (math.inf, "∞"), (0.123456, "0.123"), (123.456, "123"),
        (98765.4, "98,800"), (0.00123456, "0.00123"), (-15.04, "-15.0"),
    ],
)  # fmt: skip
def test_three_significant_figures(value: float, shown: str) -> None:
    assert _tables.sig3(value) == shown


@pytest.mark.parametrize("value", [None, math.nan, pd.NA, pd.NaT, "", "  "])
def test_missing_values(value: Any) -> None:
    assert _tables.is_missing(value)


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("ttft_s", "TTFT (s)"), ("tpot_s", "TPOT (s)"), ("e2e_s", "E2E (s)"),
        ("output_tps", "tokens/s"), ("cost_usd", "cost (USD)"),
        ("completion_tokens", "output tokens"), ("prompt_tokens", "prompt tokens"),
        ("cached_tokens", "cached tokens"), ("n_chunks", "n_chunks"),
        ("ttft_s_p95", "TTFT p95 (s)"),
        ("e2e_s_mean", "E2E mean (s)"), ("output_tps_p50", "tokens/s p50"),
        ("srv_decode_ms", "srv_decode (ms)"), ("gpu_power_w", "gpu_power (W)"),
        ("rss_mb", "rss (MB)"), ("error_rate", "error rate (%)"),
    ],
)  # fmt: skip
def test_headers_carry_units(name: str, label: str) -> None:
    assert _tables.column(name).label == label


def test_every_recorded_column_has_a_label() -> None:
    """No per-call column falls through to a bare formatter by accident: a time in seconds
    always says which unit it shows."""
    for name in COLUMNS:
        spec = _tables.column(name)
        if name.endswith("_s"):
            assert spec.label.endswith("(s)"), spec  # the frame's unit, as footers say it


# -- the %llm_stats table ------------------------------------------------------------------


def test_calls_table_layout() -> None:
    df = calls(
        record("a", ttft_ms=41),
        record("b", ttft_ms=1500, tokens=1, usage=Usage(None, None, None)),
    )
    table = _tables.CALLS_VIEW.table(df)
    html = table.html
    labels = header(html)
    assert len(labels) <= 10 < len(df.columns)
    assert labels[:3] == ["started (UTC)", "model", "status"]  # no index column before them
    for unit in ("TTFT (s)", "tokens/s", "E2E (s)", "cost (USD)", "output tokens"):
        assert unit in labels
    # the model as a user writes it: one column, unique per server
    assert column_of(html, "model") == ["llamacpp:a@127.0.0.1:8080", "llamacpp:b@127.0.0.1:8080"]
    assert "model_id" not in df  # the frame itself is left as it was
    assert column_of(html, "TTFT (s)") == ["0.0410", "1.50"]
    assert column_of(html, "output tokens") == ["21", "1"]
    assert column_of(html, "tokens/s") == ["105", "—"]  # one token: no decode time
    assert column_of(html, "cost (USD)") == ["—", "—"]  # local: not metered, not 0
    assert all(len(r) == len(labels) for r in rows(html))
    # no wrapped ids: every cell keeps to one line
    cells = re.findall(r"<t[hd]\b[^>]*>", html)
    assert cells and all("white-space:nowrap" in c for c in cells)
    assert "jp-RenderedHTMLCommon" in html and "overflow-x:auto" in html
    assert f"10 of {len(COLUMNS)} columns" in visible(html) and "--all" in visible(html)
    assert "index" not in html
    assert_inert(html)


def test_calls_text_form() -> None:
    text = _tables.CALLS_VIEW.table(calls(record("a"), record("b"))).text
    head, first, second, note = text.splitlines()
    assert head.split()[:4] == ["started", "(UTC)", "model", "status"]
    assert first.split()[:3] == ["13:04:05", "llamacpp:a@127.0.0.1:8080", "ok"]
    assert first.split()[-6:] == ["0.0410", "105", "12", "21", "0.241", "—"]  # TTFT … cost
    assert second.split()[1] == "llamacpp:b@127.0.0.1:8080" and "--all" in note
    # Numbers right-aligned under their headers: every line ends at the same column.
    assert len(head) == len(first) == len(second)


def test_shown_frame_is_the_whole_numeric_frame() -> None:
    df = calls(record("a"), record("b"))
    shown = _tables.shown(df, _tables.CALLS_VIEW)
    assert isinstance(shown, pd.DataFrame) and list(shown.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(pd.DataFrame(shown), df)
    assert shown["completion_tokens"].dtype == float and shown["ttft_s"].iloc[0] == 0.041
    # Its display is the table; anything derived from it is a plain DataFrame again.
    assert shown._repr_html_() == _tables.CALLS_VIEW.table(df).html
    assert repr(shown) == _tables.CALLS_VIEW.table(df).text
    for derived in (shown[["model"]], shown.head(1), shown.copy(), pd.DataFrame(shown)):
        assert type(derived) is pd.DataFrame
        assert "call_id" in derived._repr_html_() or list(derived.columns) == ["model"]


def test_all_columns_view() -> None:
    df = calls(record("a"))
    html = _tables.ALL_CALLS_VIEW.table(df).html
    labels = header(html)
    assert len(labels) == len(COLUMNS)
    assert "TTFT (s)" in labels and "n_chunks" in labels
    assert column_of(html, "n_chunks") == ["21"]
    assert column_of(html, "stream") == ["yes"]
    assert "columns;" not in visible(html)


def test_long_frames_show_their_last_calls() -> None:
    df = calls(*[record(f"m{i}") for i in range(_tables.MAX_ROWS + 5)])
    table = _tables.CALLS_VIEW.table(df)
    models = column_of(table.html, "model")
    assert len(models) == _tables.MAX_ROWS
    assert models[-1] == f"llamacpp:m{_tables.MAX_ROWS + 4}@127.0.0.1:8080"
    assert f"the last {_tables.MAX_ROWS} of {_tables.MAX_ROWS + 5} rows" in table.text


# -- side by side --------------------------------------------------------------------------


def test_answers_table_follows_the_answers_order_and_labels() -> None:
    first, second, third = record("x", ttft_ms=300), record("y"), record("x", ttft_ms=90)
    # Recorded in the order they finished, not the order of the answers' columns.
    df = calls(second, third, first)
    ids = [first.call_id, second.call_id, third.call_id]
    table = _tables.answers_table(df, ids, ["local", "llamacpp:y", "local (2)"])
    assert table is not None
    assert column_of(table.html, "model") == ["local", "llamacpp:y", "local (2)"]
    assert column_of(table.html, "TTFT (s)") == ["0.300", "0.0410", "0.0900"]
    assert header(table.html)[0] == "model" and len(header(table.html)) <= 10
    assert table.text.splitlines()[1].startswith("local ")
    assert _tables.answers_table(df.iloc[:0], ids, ["a", "b", "c"]) is None  # recording off


# -- summaries -----------------------------------------------------------------------------


def test_summary_table() -> None:
    df = calls(record("a"), record("a", ttft_ms=60), record("b", status="cancelled"))
    summ = summary_frame(df)
    shown = _tables.shown(summ, _tables.SUMMARY_VIEW)
    html = shown._repr_html_()
    labels = header(html)
    assert "run_id" not in labels and len(labels) <= 10  # one run: no run column
    assert labels[:4] == ["model", "ok", "errors", "stopped"]
    assert column_of(html, "ok") == ["2", "0"] and column_of(html, "stopped") == ["0", "1"]
    assert column_of(html, "TTFT p50 (s)") == ["0.0505", "—"]
    assert "--summary --all" in visible(html)
    two_runs = summ.assign(run_id=["r1", "r2"])
    assert header(_tables.SUMMARY_VIEW.table(two_runs).html)[0] == "run_id"


def test_eval_table_shows_scores_after_the_model() -> None:
    summ = pd.DataFrame(
        [{"model_id": "local", "score_exact": 0.5, "n": 6.0, "n_ok": 6, "n_error": 0,
          "ttft_s_p50": 0.012, "output_tps_mean": 250.0, "e2e_s_p50": 0.2,
          "cost_usd": math.nan, "host_cpu": "x"}]
    )  # fmt: skip
    table = _tables.eval_table(summ)
    assert header(table.html)[:3] == ["model", "score: exact", "cells"]
    assert rows(table.html)[0][:3] == ["local", "0.500", "6"]
    assert "host_cpu" not in header(table.html)


# -- untrusted text ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [MODEL_NAME, MODEL_NAME * 5, "a\nb\tc<\x00>", '"quoted" & <b>'])
def test_hostile_model_names_are_text(name: str) -> None:
    df = calls(record(name))
    for view in (_tables.CALLS_VIEW, _tables.ALL_CALLS_VIEW):
        table = view.table(df)
        shown = assert_inert(table.html)
        assert name in shown.shown or " ".join(name.split()) in shown.shown
        assert "\n" not in table.text.splitlines()[1]
    long = _tables.CALLS_VIEW.table(calls(record(MODEL_NAME * 5))).html
    title = re.search(r'title="([^"]*)"', long)
    assert title is not None and "<" not in title.group(1)  # escaped in the attribute too
    answers = _tables.answers_table(df, [df["call_id"][0]], [name])
    assert answers is not None and name in assert_inert(answers.html).shown
