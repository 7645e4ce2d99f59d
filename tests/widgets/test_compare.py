"""The compare panel (llm_nb/_widgets/_compare.py) against the real llama-server: every column
streams, then stats and plot; Stop and a failing model; a model given twice; no plot without
matplotlib."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest

import llm_nb
from llm_nb._safe_html import escape
from llm_nb._widgets import ComparePanel
from llm_nb._widgets._compare import _plot_widget
from tests.widgets.drive import LONG, host_of, slots_idle, streaming


async def test_compare_panel_streams_every_column_then_stats_and_plot(
    kernel_loop: Any, llama_server: Any
) -> None:
    host = host_of(llama_server.url)
    models = [f"llamacpp:smollm2@{host}", f"openai:smollm2@{host}"]
    panel = llm_nb.compare_panel(models, max_tokens=20, extra=LONG, throttle_s=0.1)
    assert isinstance(panel, ComparePanel)
    await panel.wait()  # the model listing, in the background
    keys = {o[1] if isinstance(o, tuple) else o for o in panel.models.options}
    assert set(models) <= keys and panel.models.value == tuple(models)
    panel.prompt.value = "Say hello."
    panel.run_button.click()
    assert not panel.stop_button.disabled
    await panel.wait()

    assert len(panel.columns.children) == 2
    assert all("llm-nb-compare-col" in c._dom_classes for c in panel.columns.children)
    for call, answer, footer in zip(panel.calls, panel._answers, panel._footers, strict=True):
        assert call.record.status == "ok" and call.record.usage.completion_tokens == 20
        assert answer.text == call.record.text != ""
        assert "tokens/s" in footer.value
    first, second = (c.record.trace for c in panel.calls)
    assert first.t_send_ns is not None and second.t_send_ns is not None
    assert first.t_end_ns is not None and second.t_end_ns is not None
    assert max(first.t_send_ns, second.t_send_ns) < min(first.t_end_ns, second.t_end_ns)

    assert panel.run_id is not None
    frame = llm_nb.stats(panel.run_id)
    assert sorted(frame["provider"]) == ["llamacpp", "openai"]
    assert "TTFT (s)" in panel.table.value and "tokens/s" in panel.table.value
    # One row per column, in the columns' order, labelled as the columns are.
    labels = re.findall(r"<tr><td[^>]*>([^<]*)</td>", panel.table.value)
    assert labels == [escape(c.label) for c in panel.calls] == [escape(m) for m in models]
    (plot,) = panel.plot.children
    assert "llm-nb-compare-plot-image" in plot._dom_classes
    assert plot.value[:8] == b"\x89PNG\r\n\x1a\n"
    saved = panel.saved.bundle
    assert all(c.record.text.split()[0] in saved["text/plain"] for c in panel.calls)
    assert "TTFT (s)" in saved["text/html"] and saved["text/html"].count(" tokens/s · ") == 2
    assert not panel.run_button.disabled and panel.stop_button.disabled


async def test_compare_stop_and_a_failing_model(
    kernel_loop: Any, model: str, dead_host: str, llama_server: Any
) -> None:
    dead = f"llamacpp:smollm2@{dead_host}"
    panel = llm_nb.compare_panel([model, dead], max_tokens=3000, extra=LONG)
    await panel.wait()
    panel.run("Write a very long story.")
    await streaming(lambda: panel.calls[0].record, 20)
    panel.stop_button.click()
    await panel.wait()
    live, failed = panel.calls
    assert live.record.status == "cancelled" and live.interrupted and live.record.text
    assert panel._answers[0].text.endswith("[stopped]")
    assert failed.error is not None and failed.record.status == "error"
    assert panel.error.text.startswith("1 of 2 models failed;"), panel.error.text
    assert "\n" not in panel.error.text
    assert await slots_idle(llama_server.url)

    panel.models.value = (model,)
    panel.run("Hi")
    panel.stop()  # before the task's first step
    await panel.wait()
    assert [c.record.status for c in panel.calls] == ["cancelled"]
    assert panel._answers[0].text.endswith("[stopped]") and not panel.run_button.disabled


async def test_a_model_given_twice_gets_its_own_numbered_column_row_and_bar(
    kernel_loop: Any, model: str
) -> None:
    """As ``%%llm M M`` does: two columns, "M #1" and "M #2", and the table rows and plot
    bars named the same way, in the same order."""
    panel = llm_nb.compare_panel([model, model], max_tokens=4, throttle_s=0.1)
    await panel.wait()
    labels = [f"{model} #1", f"{model} #2"]
    assert list(panel.models.label) == labels  # both selected, told apart
    panel.run("Hi")
    await panel.wait()
    assert [c.label for c in panel.calls] == labels
    assert [c.record.status for c in panel.calls] == ["ok", "ok"]
    assert panel.calls[0].record.call_id != panel.calls[1].record.call_id
    titles = [col.children[0].value for col in panel.columns.children]
    assert titles == [f'<b style="overflow-wrap:anywhere">{escape(label)}</b>' for label in labels]
    rows = re.findall(r"<tr><td[^>]*>([^<]*)</td>", panel.table.value)
    assert rows == [escape(label) for label in labels]
    from llm_nb._present._tables import run_frame

    assert panel.run_id is not None
    assert list(run_frame(panel.calls, panel.run_id)["label"]) == labels  # what the plot shows


def test_compare_plot_is_skipped_without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"label": ["llamacpp:m@h"], "ttft_s": [0.1],
         "output_tps": [50.0]}
    )  # fmt: skip
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    note = _plot_widget(frame)
    assert "llm-nb-compare-plot-note" in note._dom_classes and "matplotlib" in note.value
