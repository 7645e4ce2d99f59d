"""The shared presentation layer's pieces that need no server: column labels, readable
tables, the saved copy's hiding rule and the compare plot's labels."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest

from llm_nb._present._calls import column_labels
from llm_nb._present._tables import CALL_COLUMNS, RUN_COLUMNS, Table, three_figures


def test_a_repeated_model_gets_numbered_labels_and_others_keep_their_id() -> None:
    assert column_labels(["a", "b", "a"]) == ["a #1", "b", "a #2"]
    assert column_labels(["a", "b"]) == ["a", "b"]
    assert column_labels([]) == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.123456, "0.123"),
        (1.23456, "1.23"),
        (12.3456, "12.3"),
        (123.456, "123"),
        (98765.4, "98,800"),
        (0.00123456, "0.00123"),
        (0.0000123456, "1.23e-05"),
        (-15.04, "-15.0"),
        (0.0, "0"),
    ],
)
def test_numbers_show_three_significant_figures(value: float, shown: str) -> None:
    assert three_figures(value) == shown


def call_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "started_at": pd.to_datetime(["2026-12-03T10:11:12Z", "2026-12-03T10:11:13Z"]),
            "provider": ["llamacpp", "openai"],
            "model": ["smollm2", "<b>x</b>"],
            "host": ["127.0.0.1:8080", "api.example.com"],
            "status": ["ok", "cancelled"],
            "finish_reason": ["length", None],
            "ttft_s": [0.0412345, math.nan],
            "output_tps": [151.234, math.nan],
            "prompt_tokens": [31.0, math.nan],
            "completion_tokens": [41.0, 3.0],
            "e2e_s": [0.31234, 1.5],
            "cost_usd": [math.nan, 0.000123456],
            "text_sha256": ["ab" * 32, "cd" * 32],
        }
    )


def test_a_call_table_is_readable_and_keeps_the_whole_frame() -> None:
    frame = call_frame()
    table = Table(frame, CALL_COLUMNS)
    assert table.frame is frame  # the complete, numeric frame, untouched
    headers = [c.header for c in table.columns]
    assert headers == [
        "started (UTC)", "model", "status", "finish", "ttft (s)", "tok/s",
        "prompt tok", "output tok", "total (s)", "cost ($)",
    ]  # fmt: skip
    first, second = table.rows
    assert first == [
        "10:11:12", "llamacpp:smollm2@127.0.0.1:8080", "ok", "length", "0.0412", "151", "31",
        "41", "0.312", "—",
    ]  # fmt: skip
    assert second[4:8] == ["—", "—", "—", "3"]  # missing is a dash; a count is an integer
    assert second[-1] == "0.000123"

    page = table.html()
    assert "<th" in page and "index" not in page and "text_sha256" not in page
    # Cells are data: a server's model name cannot add markup.
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
    # Ids stay on one line; numbers align right.
    assert page.count("white-space:nowrap") == len(headers) * 3
    assert re.search(r'text-align:right">0\.0412<', page)
    assert table._repr_html_() == page

    text = table.text().splitlines()
    assert text[0].startswith("started (UTC)  model") and len(text) == 3
    assert "nan" not in table.text().lower() and "41.0" not in table.text()


def test_a_run_table_shows_only_the_columns_it_has() -> None:
    frame = call_frame().assign(label=["m #1", "m #2"])
    table = Table(frame, RUN_COLUMNS)
    assert [r[0] for r in table.rows] == ["m #1", "m #2"]
    assert table.columns[0].header == "model"


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
