"""The quick start in Notebook 7 (``jupyter notebook``), in headless Chromium, as a user would.

Same set-up as test_jupyterlab.py (a throwaway server on 127.0.0.1, this checkout's llm_nb
in its kernels, ``local`` the session's llama-server), but the server is Notebook 7 and pages
open in its single-document UI at ``/notebooks/<path>``:

1. notebooks/01-quickstart.ipynb runs with Run > Run All Cells, every cell without an error
   and every ``%%llm`` answer filled;
2. in tests/browser/quickstart_ui.ipynb a ``%%llm`` cell streams: while the kernel is busy the
   output already holds part of the answer, a prefix of the final one;
3. the chat panel works there: Send streams an answer into it, Stop ends it mid-way;
4. the panels and tables with the keyboard (a notebook made here): in the chat panel
   Shift+Enter sends and Escape stops, in the compare panel Shift+Enter runs and Escape
   stops, the focus back in the prompt each time, and neither key runs a cell or moves to
   another; the compare panel, a side-by-side ``%%llm`` (answers of 3 and 30 lines from the
   fake server of tests/browser/lengths.py), ``%llm_stats``, the model picker and an error,
   each fitting the cell, each answer shown once with its footer, columns of one height with
   their footers on one line, units in the table headers.

Screenshots go to test-artifacts/browser/ with the prefix ``nb7-``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from llm_nb._embedded.process.server import LlamaServer, free_port
from tests.browser import lengths
from tests.browser.lab import JupyterLab
from tests.browser.layout import assert_even_columns, fits, keys_stay_in_the_panel, times_shown
from tests.browser.page import (
    DONE_PROMPT,
    LLM_CELL_S,
    WAITING,
    Browser,
    Notebook,
    kernel_env,
    require_browser,
)
from tests.faults.server import FaultServer

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
UI_NOTEBOOK = REPO / "tests" / "browser" / "quickstart_ui.ipynb"
QUICKSTART = REPO / "notebooks" / "01-quickstart.ipynb"
NOTEBOOK_HOST = "127.0.0.1:8080"
SHOTS = REPO / "test-artifacts" / "browser"


class Notebook7(JupyterLab):
    """``jupyter notebook`` (Notebook 7) with JupyterLab's throwaway set-up (see lab.py)."""

    def notebook_url(self, path: str) -> str:
        return f"{self.url}/notebooks/{path}?token={self.token}"

    def start(self, timeout: float = 60.0) -> Notebook7:
        self.home.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._write_config()
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "notebook", "--no-browser"],
                cwd=self.root,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _api(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            headers={"Authorization": f"token {self.token}"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def kernel_state(self, notebook: str) -> str | None:
        """The execution state of ``notebook``'s kernel; None while it has none.

        Asked per notebook: an earlier test's kernel may still be shutting down.
        """
        for session in self._api("sessions"):
            if session["path"] == notebook and session.get("kernel"):
                return str(session["kernel"]["execution_state"])
        return None

    def shut_down(self, notebook: str) -> None:
        """End ``notebook``'s session and its kernel, so the next test starts clean."""
        for session in self._api("sessions"):
            if session["path"] == notebook:
                self._api(f"sessions/{session['id']}", method="DELETE")


@pytest.fixture(scope="module")
def browser(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("notebook7")
    root = home / "root"
    root.mkdir()
    host = llama_server.url.split("://", 1)[1]
    for source in (UI_NOTEBOOK, QUICKSTART):
        nb = json.loads(source.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                code = "".join(cell["source"]).replace(NOTEBOOK_HOST, host)
                cell["source"] = code.splitlines(keepends=True)
                cell["outputs"], cell["execution_count"] = [], None
        (root / source.name).write_text(json.dumps(nb, indent=1))
    env = kernel_env(llama_server.url)
    session = Browser(root, home, env)
    session.lab = Notebook7(root, home / "jupyter", env)
    yield session
    session.close()


@pytest.fixture(scope="module")
def lengths_host() -> Iterator[str]:
    """The fake server answering at very different lengths (tests/browser/lengths.py)."""
    with FaultServer(lengths.play) as srv:
        yield srv.url.split("://", 1)[1]


@contextmanager
def opened(browser: Any, notebook: Path, prefix: str) -> Iterator[Notebook]:
    """``notebook`` open in Notebook 7 in a new Chromium, its kernel started and idle."""
    require_browser()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser.tab() as page:
        nb = Notebook(page, browser.root / notebook.name, SHOTS, prefix)
        try:
            page.goto(browser.lab.notebook_url(notebook.name), timeout=120_000)
            cells = page.locator(".jp-Notebook .jp-Cell")
            cells.first.wait_for(timeout=120_000)
            deadline = time.monotonic() + 120
            while (state := browser.lab.kernel_state(notebook.name)) != "idle":
                assert time.monotonic() < deadline, f"kernel of {notebook.name}: {state}"
                time.sleep(0.2)
            assert cells.count() == len(nb.cells)
            # Notebook 7.6 with JupyterLab 4.6 logs one error of its own on opening any
            # notebook ("reading 'schema'"), before a cell has run: only later ones count.
            page.wait_for_timeout(2000)
            at_open = set(nb.console_errors())
            nb.shot("01-open")
            yield nb
            errors = [e for e in nb.console_errors() if e not in at_open]
            assert not errors, f"errors in the browser console: {errors}"
        except BaseException:
            nb.save_failure(browser.lab.log_tail(400))
            raise
        finally:
            nb.save_logs()
            browser.lab.shut_down(notebook.name)


def test_quickstart_runs_in_notebook7(browser: Any) -> None:
    with opened(browser, QUICKSTART, "nb7-quickstart") as nb:
        for i in nb.run_all_answered():
            nb.shot(f"02-cell-{i:02d}", nb.cell(i))


def test_streaming_is_visible_and_a_panel_works_in_notebook7(browser: Any) -> None:
    from playwright.sync_api import expect

    with opened(browser, UI_NOTEBOOK, "nb7-ui") as nb:
        nb.run_done(nb.index("%load_ext llm_nb"))
        stream = nb.index("-o ans")
        nb.run(stream)
        partials: list[str] = []
        deadline = time.monotonic() + LLM_CELL_S
        while not DONE_PROMPT.match((snap := nb.snapshot(stream))["prompt"]):
            assert time.monotonic() < deadline, "the %%llm cell did not finish"
            text = snap["text"].strip()
            if "*" in snap["prompt"] and text and not text.startswith(WAITING):
                if not partials:
                    nb.shot("02-streaming", nb.cell(stream))
                partials.append(text)
            time.sleep(0.05)
        nb.wait_done(stream)
        final = nb.outputs(stream).first.inner_text().strip()
        assert partials, "nothing was shown while the cell was busy"
        assert all(final.startswith(p.rstrip("…").strip()) for p in partials)
        assert len(partials[0]) < len(final)
        nb.shot("03-streamed", nb.cell(stream))

        chat_index = nb.index("chat = llm_nb.chat_panel(")
        nb.run_done(chat_index)
        chat = nb.cell(chat_index).locator(".llm-nb-chat")
        expect(chat).to_be_visible()
        chat.locator(".llm-nb-chat-prompt textarea").fill("Tell me a long story about the sea.")
        chat.locator("button.llm-nb-chat-send").click()
        answer = chat.locator(".llm-nb-chat-answer").last
        deadline = time.monotonic() + LLM_CELL_S
        while len(answer.inner_text().strip()) < 40:
            assert time.monotonic() < deadline, "the chat answer did not stream"
            time.sleep(0.05)
        nb.shot("04-chat-streaming", chat)
        chat.locator("button.llm-nb-chat-stop").click()
        expect(answer).to_contain_text("[stopped]", timeout=15_000)
        expect(chat.locator("button.llm-nb-chat-send")).to_be_enabled()
        turn = nb.printed_json(nb.index("turn = chat.turns[-1]"))
        assert turn["interrupted"] is True and 0 < turn["tokens"] < 400, turn
        assert turn["text"].split()[:3] == answer.inner_text().split()[:3], turn
        nb.shot("05-chat-stopped", chat)


PANELS = "nb7_panels.ipynb"
#: The window's height for a screenshot of a whole 30-line answer and its footers.
TALL = 1900


def _panels_notebook(model: str, fake: str) -> dict[str, Any]:
    short, long, failing = (f"openai:{m}@{fake}" for m in ("short", "long", lengths.FAILING))
    cells = [
        f'%load_ext llm_nb\nimport json\n\nimport llm_nb\n\nMODEL = "{model}"',
        "chat = llm_nb.chat_panel(MODEL, max_tokens=3000, extra={'ignore_eos': True})\nchat",
        f"compare = llm_nb.compare_panel([{short!r}, {long!r}])\ncompare",
        f"%%llm {short} {long}\nAnswer at your own length.",
        "%llm_stats",
        "picker = llm_nb.model_picker()\nawait picker.wait()\npicker.select(MODEL)\npicker",
        f"%%llm {failing}\nHello?",
        "print(json.dumps([[t.call.interrupted, t.record.status] for t in chat.turns]))",
    ]
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": c.splitlines(keepends=True)}
            for c in cells
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                    "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip


def _table_headers(table: Any) -> list[str]:
    headers: list[str] = table.locator("thead th").all_inner_texts()
    assert {"TTFT (s)", "tokens/s", "output tokens"} <= set(headers), headers
    assert not any("(ms)" in h for h in headers), headers
    return headers


def test_panels_keys_and_layout_in_notebook7(
    browser: Any, llama_server: LlamaServer, lengths_host: str
) -> None:
    from playwright.sync_api import expect

    ms = LLM_CELL_S * 1000
    host = llama_server.url.split("://", 1)[1]
    path = browser.root / PANELS
    path.write_text(json.dumps(_panels_notebook(f"llamacpp:smollm2@{host}", lengths_host)))
    with opened(browser, path, "nb7-panels") as nb:
        nb.run_done(0)

        # -- the chat panel: Shift+Enter sends, Escape stops, the focus stays in the prompt --
        nb.run_done(1)
        chat = nb.cell(1).locator(".llm-nb-chat")
        box = chat.locator(".llm-nb-chat-prompt textarea")
        box.fill("Write a very long story about a dragon.")
        answer = chat.locator(".llm-nb-chat-answer").last
        figures = chat.locator(".llm-nb-chat-figures").last
        with keys_stay_in_the_panel(nb):
            box.press("Shift+Enter")
            expect(box).to_have_value("")  # sent; no newline left behind
            expect(figures).to_contain_text("output tokens…", timeout=ms)
            expect(box).to_be_focused()
            deadline = time.monotonic() + LLM_CELL_S
            while len(answer.inner_text().split()) < 30:  # a few lines, then stop it
                assert time.monotonic() < deadline, "the chat answer did not stream"
                time.sleep(0.05)
            nb.shot("02-chat-streaming", nb.cell(1))
            box.press("Escape")
            expect(answer).to_contain_text("[stopped]", timeout=30_000)
        expect(box).to_be_focused()
        expect(chat.locator("button.llm-nb-chat-send")).to_be_enabled()
        expect(chat.locator(".llm-nb-chat-turn")).to_have_count(1)
        expect(figures).to_contain_text(re.compile(r"TTFT [\d.]+ s · [\d.]+ tokens/s · \d+"))
        text = answer.inner_text()
        assert times_shown(nb, 1, " ".join(text.split()[:6])) == 1
        fits(nb, 1)
        nb.shot("03-chat-stopped", nb.cell(1))

        # -- the compare panel: Shift+Enter runs, Escape stops; a 3- and a 30-line answer ----
        nb.run_done(2)
        compare = nb.cell(2).locator(".llm-nb-compare")
        box = compare.locator(".llm-nb-compare-prompt textarea")
        box.fill("Answer at your own length.")
        long_answer = compare.locator(".llm-nb-compare-answer").nth(1)
        run = compare.locator("button.llm-nb-compare-run")
        with keys_stay_in_the_panel(nb):
            box.press("Shift+Enter")
            expect(long_answer).to_contain_text("line 2:", timeout=ms)
            box.press("Escape")
            expect(long_answer).to_contain_text("[stopped]", timeout=30_000)
            expect(run).to_be_enabled()
        expect(box).to_be_focused()
        assert "line 30:" not in long_answer.inner_text()  # stopped mid-way
        nb.shot("04-compare-stopped", nb.cell(2))
        with keys_stay_in_the_panel(nb):
            box.press("Shift+Enter")  # the prompt is kept: run it again, to the end
            expect(long_answer).to_contain_text("line 30:", timeout=ms)
            expect(run).to_be_enabled(timeout=ms)
        expect(box).to_be_focused()
        expect(compare.locator(".llm-nb-compare-plot-image")).to_be_visible(timeout=ms)
        titles = compare.locator(".llm-nb-compare-title").all_inner_texts()
        assert titles == [f"openai:{m}@{lengths_host}" for m in ("short", "long")], titles
        table = compare.locator(".llm-nb-compare-stats table")
        assert _table_headers(table)[0] == "model"
        rows = [r.split("\t")[0] for r in table.locator("tbody tr").all_inner_texts()]
        assert rows == titles, rows
        for footer in compare.locator(".llm-nb-compare-figures").all_inner_texts():
            assert re.search(r"TTFT [\d.]+ s · .*tokens/s · \d+ output tokens", footer), footer
        for first in ("Short answer, line 1.", "Long answer, line 1:"):
            assert times_shown(nb, 2, first) == 1, first
        assert_even_columns(nb, 2, "compare")
        fits(nb, 2)
        nb.shot("05-compare", nb.cell(2), height=TALL)

        # -- side by side in %%llm: the same answers, the same even columns ---------------
        nb.run_done(3, ms)
        assert_even_columns(nb, 3, "llm")
        _table_headers(nb.cell(3).locator(".jp-OutputArea-output table"))
        for first in ("Short answer, line 1.", "Long answer, line 1:"):
            assert times_shown(nb, 3, first) == 1, first
        fits(nb, 3)
        nb.shot("06-side-by-side", nb.cell(3), height=TALL)

        # -- %llm_stats --------------------------------------------------------------------
        nb.run_done(4)
        stats = nb.outputs(4).last.locator("table")
        expect(stats).to_be_visible()
        headers = _table_headers(stats)
        assert len(headers) <= 12 and not stats.locator("tbody th").count(), headers
        assert "NaN" not in stats.inner_text() and "nan" not in stats.inner_text()
        fits(nb, 4)
        nb.shot("07-stats", nb.cell(4))

        # -- the model picker ---------------------------------------------------------------
        nb.run_done(5)
        picker = nb.cell(5).locator(".llm-nb-picker")
        expect(picker.locator(".llm-nb-picker-models select").first).to_be_visible(timeout=30_000)
        chosen = picker.locator(".llm-nb-picker-models select option:checked")
        expect(chosen).to_have_text(re.compile(r"^★\s+smollm2\s+—\s+loaded"))
        fits(nb, 5)
        nb.shot("08-picker", nb.cell(5))

        # -- an error: one line saying what failed, nothing else ----------------------------
        nb.run(6)
        expect(nb.prompt(6)).to_have_text(DONE_PROMPT, timeout=ms)
        error = nb.outputs(6).last
        expect(error).to_contain_text("llm_nb: ")
        expect(error).to_contain_text(lengths.ERROR_MESSAGE)
        assert len(error.inner_text().strip().splitlines()) == 1, error.inner_text()
        fits(nb, 6)
        nb.shot("09-error", nb.cell(6))

        assert nb.printed_json(7) == [[True, "cancelled"]]  # one turn, stopped by Escape
