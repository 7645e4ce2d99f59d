"""The shared presentation layer's pieces that need no server: column labels, the saved
copy's hiding rule and the compare plot's labels (the tables: tests/test_tables.py)."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest

from llm_nb._present._calls import column_labels


def test_a_repeated_model_gets_numbered_labels_and_others_keep_their_id() -> None:
    assert column_labels(["a", "b", "a"]) == ["a #1", "b", "a #2"]
    assert column_labels(["a", "b"]) == ["a", "b"]
    assert column_labels([]) == []


def test_the_saved_copy_is_hidden_only_by_its_own_panels_rule() -> None:
    from llm_nb._widgets._saved import SavedOutput

    one, two = SavedOutput(), SavedOutput()
    one.update("<p>answer</p>", "answer")
    assert one.bundle["text/plain"] == "answer"
    page = one.bundle["text/html"]
    assert page == f'<div class="llm-nb-saved {one.css_class}"><p>answer</p></div>'
    rule = one.hiding_rule()
    assert f".{one.css_class}" in rule and "display:none" in rule
    assert two.css_class not in rule and re.fullmatch(r"llm-nb-saved-[0-9a-f]{32}", one.css_class)


def test_a_panel_carries_the_rule_that_hides_its_saved_copy() -> None:
    from llm_nb._widgets import ChatPanel

    panel = ChatPanel("llamacpp:m@127.0.0.1:9")
    rule = panel.saved_rule
    assert rule in panel.children and rule.layout.display == "none"
    assert rule.value == f"<style>{panel.saved.hiding_rule()}</style>"
    assert panel.saved.css_class in panel.saved.bundle["text/html"]


def test_plot_bars_are_labelled_as_the_columns() -> None:
    pytest.importorskip("matplotlib")
    from llm_nb._widgets._compare import plot_figure

    frame = pd.DataFrame(
        {"label": ["m #1", "m #2"], "ttft_s": [0.1, 0.2], "output_tps": [50.0, math.nan]}
    )
    fig = plot_figure(frame)
    ttft_ax = fig.axes[0]
    assert [t.get_text() for t in ttft_ax.get_yticklabels()] == ["m #1", "m #2"]


# -- one name, one unit per figure -----------------------------------------------------------


def _record(ttft_ms: int, tokens: int) -> Any:
    from tests.test_tables import record

    return record("m", ttft_ms=ttft_ms, tokens=tokens)


@pytest.mark.parametrize(
    ("ttft_ms", "tokens", "footer", "cells"),
    [
        (41, 21, "TTFT 0.0410 s · 105 tokens/s · 21 output tokens · stop · cost —",
         ["0.0410", "105", "21", "—"]),
        (1260, 300, "TTFT 1.26 s · 100 tokens/s · 300 output tokens · stop · cost —",
         ["1.26", "100", "300", "—"]),
    ],
)  # fmt: skip
def test_a_footer_and_the_tables_read_each_figure_alike(
    ttft_ms: int, tokens: int, footer: str, cells: list[str]
) -> None:
    """The footer under an answer says each figure with the name, unit and digits of the
    tables' column for it: "TTFT 1.26 s" over a "TTFT (s)" column showing 1.26."""
    from llm_nb import _tables
    from llm_nb._present._figures import figures
    from llm_nb._stats import call_row
    from llm_nb._stats._frames import frame
    from tests.test_tables import column_of

    record = _record(ttft_ms, tokens)
    assert str(figures(record)) == footer
    df = frame([call_row(record)])
    answers = _tables.answers_table(df, [record.call_id], ["m"])
    assert answers is not None
    calls = _tables.CALLS_VIEW.table(df).html
    for table in (answers.html, calls):
        shown = [column_of(table, h)[0]
                 for h in ("TTFT (s)", "tokens/s", "output tokens", "cost (USD)")]  # fmt: skip
        assert shown == cells, shown
    summary = _tables.SUMMARY_VIEW.table(_summary(df)).html
    assert "TTFT p50 (s)" in summary and "(ms)" not in summary + calls + answers.html


def _summary(df: pd.DataFrame) -> pd.DataFrame:
    from llm_nb._stats._frames import summary

    return summary(df)


def test_one_token_is_singular() -> None:
    from llm_nb._present._figures import Figures

    assert "· 1 output token · stop" in str(Figures(1.0, math.nan, 1, math.nan, "stop"))
    cut = Figures(1.0, math.nan, 1, math.nan, "length", "-n")
    assert "cut at 1 token (-n)" in str(cut) and "cut at 2 tokens" in str(
        Figures(1.0, math.nan, 2, math.nan, "length", "-n")
    )


def test_a_streaming_footer_uses_the_same_names() -> None:
    from llm_nb._present._figures import live_figures

    record = _record(1260, 12)
    assert live_figures(record) == "TTFT 1.26 s · 12 output tokens…"


def test_the_compare_plot_titles_are_the_table_headers() -> None:
    pytest.importorskip("matplotlib")
    from llm_nb._widgets._compare import plot_figure

    frame = pd.DataFrame({"label": ["m"], "ttft_s": [0.1], "output_tps": [50.0]})
    titles = [ax.get_title() for ax in plot_figure(frame).axes]
    assert titles == ["TTFT (s)", "tokens/s"]
