"""The shared presentation layer's pieces that need no server: column labels, the saved
copy's hiding rule and the compare plot's labels (the tables: tests/test_tables.py)."""

from __future__ import annotations

import math
import re

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
