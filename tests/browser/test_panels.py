"""The panels and tables as a user sees them: JupyterLab in headless Chromium.

Same set-up as test_jupyterlab.py (a throwaway JupyterLab on 127.0.0.1, this checkout's
llm_nb in its kernel, the session's llama-server). A notebook made here displays the chat
panel, the compare panel (one model twice), a single-model ``%%llm``, ``%llm_stats`` and the
model picker, then answers of 3 and 30 lines (the fake server of tests/browser/lengths.py) side
by side in ``%%llm`` and in a compare panel; the test works them with the mouse and checks
what is on the page: each answer shown once, nothing wider than the cell, numbered columns
for a repeated model, units in the table headers, columns of one height with their footers on
one line whatever the answers' lengths, and, after saving and reopening without the kernel,
the saved copies shown (rendered) in the panels' place.

Screenshots go to test-artifacts/browser/ with the prefix ``panels-``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_nb._embedded.process.server import LlamaServer
from tests.browser import lengths
from tests.browser.layout import (
    assert_even_columns,
    first_words,
    fits,
    keys_stay_in_the_panel,
    times_shown,
)
from tests.browser.page import LLM_CELL_S, Browser, kernel_env, notebook_in_chromium
from tests.faults.server import FaultServer

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "browser"
NOTEBOOK = "panels.ipynb"


def _code(source: str) -> dict[str, Any]:
    return {
        "cell_type": "code",
        "execution_count": None,
        "metadata": {},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    }


def _notebook(model: str, fake: str) -> dict[str, Any]:
    short, long = f"openai:short@{fake}", f"openai:long@{fake}"
    cells = [
        f'%load_ext llm_nb\nimport json\n\nimport llm_nb\n\nMODEL = "{model}"',
        "chat = llm_nb.chat_panel(MODEL, max_tokens=24, temperature=0)\nchat",
        "compare = llm_nb.compare_panel([MODEL, MODEL], max_tokens=24, temperature=0)\ncompare",
        f"%%llm {model} -t 0 -n 16\nName three colours.",
        "%llm_stats",
        "picker = llm_nb.model_picker()\nawait picker.wait()\npicker.select(MODEL)\npicker",
        "long = llm_nb.chat_panel(MODEL, max_tokens=3000, extra={'ignore_eos': True})\nlong",
        f"%%llm {short} {long}\nAnswer at your own length.",
        f"lengths = llm_nb.compare_panel([{short!r}, {long!r}])\nlengths",
    ]
    return {
        "cells": [_code(c) for c in cells],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lengths_host() -> Iterator[str]:
    """The fake server answering at very different lengths (tests/browser/lengths.py)."""
    with FaultServer(lengths.play) as srv:
        yield srv.url.split("://", 1)[1]


@pytest.fixture(scope="module")
def browser(
    llama_server: LlamaServer, lengths_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    home = tmp_path_factory.mktemp("browser-panels")
    root = home / "root"
    root.mkdir()
    host = llama_server.url.split("://", 1)[1]
    notebook = _notebook(f"llamacpp:smollm2@{host}", lengths_host)
    (root / NOTEBOOK).write_text(json.dumps(notebook, indent=1))
    env = kernel_env(llama_server.url)
    session = Browser(root, home, env)
    yield session
    session.close()


def test_each_answer_shows_once_fits_the_cell_and_is_saved(
    browser: Browser, llama_server: LlamaServer
) -> None:
    from playwright.sync_api import expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    ms = LLM_CELL_S * 1000
    notebook = browser.root / NOTEBOOK
    # Reopened without the kernel that made them, the panels' widget models are gone.
    with notebook_in_chromium(browser, notebook, SHOTS, "panels", ("model not found",)) as nb:
        page = nb.page
        nb.run_done(0)

        # -- the chat panel: the answer once, the saved copy hidden under it -----------
        nb.run_done(1)
        chat = nb.cell(1).locator(".llm-nb-chat")
        box = chat.locator(".llm-nb-chat-prompt textarea")
        box.fill("Say hi in **bold**.")
        with keys_stay_in_the_panel(nb):
            box.press("Shift+Enter")  # sends: no newline added, and the notebook ignores it
            expect(chat.locator(".llm-nb-chat-figures").last).to_contain_text(
                "tokens/s", timeout=ms
            )
        expect(chat.locator(".llm-nb-chat-turn")).to_have_count(1)
        expect(box).to_have_value("")
        expect(box).to_be_focused()
        answer = chat.locator(".llm-nb-chat-answer").last.inner_text()
        assert answer.strip()
        saved = nb.cell(1).locator(".llm-nb-saved")
        expect(saved).to_have_count(1)
        expect(saved).to_be_hidden()
        assert saved.inner_html().count("<p") >= 1  # it does hold the finished turn
        assert times_shown(nb, 1, first_words(answer)) == 1
        fits(nb, 1)
        nb.shot("01-chat", nb.cell(1))

        # -- the compare panel, one model twice -------------------------------------------
        nb.run_done(2)
        compare = nb.cell(2).locator(".llm-nb-compare")
        box = compare.locator(".llm-nb-compare-prompt textarea")
        box.fill("Name a fruit.")
        with keys_stay_in_the_panel(nb):
            box.press("Shift+Enter")  # runs
            expect(compare.locator(".llm-nb-compare-plot-image")).to_be_visible(timeout=ms)
        titles = compare.locator(".llm-nb-compare-title").all_inner_texts()
        model = f"llamacpp:smollm2@{llama_server.url.split('://', 1)[1]}"
        assert titles == [f"{model} #1", f"{model} #2"], titles
        table = compare.locator(".llm-nb-compare-stats table")
        headers = table.locator("th").all_inner_texts()
        assert headers[:1] == ["model"] and "TTFT (s)" in headers, headers
        rows = [r.split("\t")[0] for r in table.locator("tbody tr").all_inner_texts()]
        assert rows == titles, rows
        for col in compare.locator(".llm-nb-compare-answer").all():
            text = col.inner_text()
            assert text.strip() and times_shown(nb, 2, first_words(text)) >= 1
        # The two columns answer alike (greedy): each answer twice, never four times.
        first = first_words(compare.locator(".llm-nb-compare-answer").first.inner_text())
        assert times_shown(nb, 2, first) <= 2
        expect(nb.cell(2).locator(".llm-nb-saved")).to_be_hidden()
        refresh = compare.locator("button.llm-nb-compare-refresh")
        assert refresh.evaluate("b => b.scrollWidth <= b.clientWidth"), "truncated button"
        fits(nb, 2)
        nb.shot("02-compare", nb.cell(2))

        # -- %%llm with one model, and %llm_stats --------------------------------------
        nb.run_done(3, ms)
        nb.shot("03-llm", nb.cell(3))
        nb.run_done(4)
        stats = nb.outputs(4).last.locator("table")
        expect(stats).to_be_visible()
        headers = stats.locator("th").all_inner_texts()
        assert "TTFT (s)" in headers and "output tokens" in headers, headers
        assert len(headers) <= 12 and not nb.outputs(4).last.locator("tbody th").count()
        assert "NaN" not in stats.inner_text() and "nan" not in stats.inner_text()
        fits(nb, 4)
        nb.shot("04-stats", nb.cell(4))

        # -- the model picker fits too -----------------------------------------------------
        nb.run_done(5)
        picker = nb.cell(5).locator(".llm-nb-picker")
        expect(picker.locator(".llm-nb-picker-models select").first).to_be_visible(timeout=30_000)
        fits(nb, 5)
        # The selection is the default, marked (the list shows spaces as no-break spaces);
        # a single-model server's Unload is disabled, its tooltip (title) saying why.
        chosen = picker.locator(".llm-nb-picker-models select option:checked")
        expect(chosen).to_have_text(re.compile(r"^★\s+smollm2\s+—\s+loaded"))
        unload = picker.locator("button.llm-nb-picker-unload")
        expect(unload).to_be_disabled()
        expect(unload).to_have_attribute("title", re.compile("runs a single model"))
        nb.shot("05-picker", nb.cell(5))

        # -- the keyboard: Send clicked, the focus comes back to the prompt; Escape stops ------
        nb.run_done(6)
        long = nb.cell(6).locator(".llm-nb-chat")
        box = long.locator(".llm-nb-chat-prompt textarea")
        box.fill("Write a very long story about a dragon.")
        long.locator("button.llm-nb-chat-send").click()
        expect(box).to_be_focused(timeout=15_000)
        expect(long.locator(".llm-nb-chat-figures").last).to_contain_text("tokens", timeout=ms)
        with keys_stay_in_the_panel(nb):
            box.press("Escape")
            expect(long.locator(".llm-nb-chat-answer").last).to_contain_text(
                "stopped", timeout=30_000
            )
        expect(long.locator("button.llm-nb-chat-stop")).to_be_disabled()
        expect(long.locator(".llm-nb-chat-turn")).to_have_count(1)
        expect(box).to_be_focused()
        nb.shot("08-keyboard-stopped", nb.cell(6))

        # -- answers of 3 and 30 lines side by side: one height, footers on one line -------
        nb.run_done(7, ms)
        assert_even_columns(nb, 7, "llm")
        fits(nb, 7)
        nb.shot("09-side-by-side-lengths", nb.cell(7), height=1900)
        nb.run_done(8)
        lengths_panel = nb.cell(8).locator(".llm-nb-compare")
        lengths_panel.locator(".llm-nb-compare-prompt textarea").fill("Answer at your length.")
        lengths_panel.locator("button.llm-nb-compare-run").click()
        expect(lengths_panel.locator(".llm-nb-compare-plot-image")).to_be_visible(timeout=ms)
        assert_even_columns(nb, 8, "compare")
        fits(nb, 8)
        nb.shot("10-compare-lengths", nb.cell(8), height=1900)

        # -- saved, then reopened without the panels' kernel ------------------------------
        page.keyboard.press("Control+s")
        expect(page.locator(".jp-mod-dirty")).to_have_count(0, timeout=15_000)
        saved_file = json.loads((browser.root / NOTEBOOK).read_text())
        nb.cells = saved_file["cells"]  # running the last cell added an empty one
        copies = [
            "".join(out["data"]["text/html"])
            for out in nb.cells[1]["outputs"]
            if "llm-nb-saved" in "".join(out.get("data", {}).get("text/html", ""))
        ]
        assert len(copies) == 1 and first_words(answer).split()[0] in copies[0]
        nb.menu("Kernel", "Shut Down Kernel")
        page.reload()
        nb.open(browser.lab.lab_url(NOTEBOOK, workspace="panels"))
        for index, text in ((1, answer), (2, first)):
            copy = nb.cell(index).locator(".llm-nb-saved")
            expect(copy).to_be_visible(timeout=30_000)
            # Rendered: the answer is in a Markdown paragraph, not raw text.
            start = " ".join(text.split()[:3])
            expect(copy.locator("p", has_text=start).first).to_be_visible()
        assert times_shown(nb, 1, first_words(answer)) == 1
        assert 1 <= times_shown(nb, 2, first) <= 2
        nb.shot("06-reopened-chat", nb.cell(1))
        nb.shot("07-reopened-compare", nb.cell(2))
