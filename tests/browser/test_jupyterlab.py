"""The quick start tried as a user would: JupyterLab in headless Chromium, clicking and typing.

JupyterLab runs on 127.0.0.1 (free port, token, a temporary root holding copies of the
notebooks, no network); its kernels are this interpreter with this checkout's llm_nb, and
``local`` is the session's llama-server (``LLM_NB_LOCAL_URL``, as ``python -m llm_nb notebook``
sets it). Chromium is Debian's (``apt-get install chromium``), driven by Playwright; if it is
missing the tests fail, saying how to install it.

``test_quickstart_ui`` runs tests/browser/quickstart_ui.ipynb (its model ids name
``127.0.0.1:8080``, rewritten to the session's server) step by step:

1. A ``%%llm`` cell streams: while the kernel shows busy, the output already holds part of the
   answer, and it grows across looks (each partial text a prefix of the final one). At the end
   the output equals the recorded answer (``-o ans``), whose token count ``llm_nb.stats()``
   agrees with.
2. A side-by-side cell (the same server through ``llamacpp:`` and ``openai:``) fills both
   columns, each equal to its record, with figures under each.
3. The model picker lists the server's model under each provider with its status; selecting
   one changes the default shown, and the next ``%%llm`` without a model uses it.
4. The chat panel's Stop button ends a long answer (400 tokens asked) mid-way; the partial
   answer stays, on screen and in the conversation.

``test_quickstart_notebook`` runs notebooks/01-quickstart.ipynb with Run > Run All Cells and
checks that every cell ran without an error and every ``%%llm`` answer (and column) filled.

Screenshots of each step go to test-artifacts/browser/ (git-ignored; CI keeps them), with the
page's console log, and on failure the page's HTML and JupyterLab's log.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_nb._embedded.process.server import LlamaServer
from tests.browser.layout import assert_columns_fit
from tests.browser.page import (
    DONE_PROMPT,
    LLM_CELL_S,
    WAITING,
    Browser,
    Notebook,
    kernel_env,
    notebook_in_chromium,
)

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(480)]

REPO = Path(__file__).resolve().parents[2]
UI_NOTEBOOK = REPO / "tests" / "browser" / "quickstart_ui.ipynb"
QUICKSTART = REPO / "notebooks" / "01-quickstart.ipynb"
#: Where quickstart_ui.ipynb's model ids expect their llama-server; rewritten to the session's.
NOTEBOOK_HOST = "127.0.0.1:8080"
SHOTS = REPO / "test-artifacts" / "browser"
#: Seconds between two looks at the page while something streams.
POLL_S = 0.05

#: The columns of a side-by-side answer (an HTML flex row, ``llm-nb-columns``: title,
#: answer, figures).
_COLUMNS_JS = """cell => [...cell.querySelectorAll(
    '.jp-OutputArea-output .llm-nb-columns')].map(row => [...row.children].map(col => ({
        label: col.firstElementChild.innerText,
        body: col.children[1].innerText,
        footer: col.lastElementChild.innerText,
    })))"""


@pytest.fixture(scope="module")
def shots() -> Path:
    """test-artifacts/browser/, emptied of an earlier run's files."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.iterdir():
        if old.is_file():
            old.unlink()
    return SHOTS


@pytest.fixture(scope="module")
def llama_host(llama_server: LlamaServer) -> str:
    return llama_server.url.split("://", 1)[1]


@pytest.fixture(scope="module")
def browser(
    llama_server: LlamaServer, llama_host: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Browser]:
    """JupyterLab serving copies of the two notebooks, and Chromium; started on first use."""
    home = tmp_path_factory.mktemp("browser")
    root = home / "root"
    root.mkdir()
    ui = json.loads(UI_NOTEBOOK.read_text())
    for cell in ui["cells"]:  # the code only: the Markdown may keep naming the default port
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]).replace(NOTEBOOK_HOST, llama_host)
            cell["source"] = source.splitlines(keepends=True)
    (root / UI_NOTEBOOK.name).write_text(json.dumps(ui, indent=1))
    if QUICKSTART.is_file():
        quick = json.loads(QUICKSTART.read_text())
        for cell in quick["cells"]:  # stored outputs would look like fresh ones
            if cell["cell_type"] == "code":
                cell["outputs"], cell["execution_count"] = [], None
        (root / QUICKSTART.name).write_text(json.dumps(quick, indent=1))
    env = kernel_env(llama_server.url)
    session = Browser(root, home, env)
    yield session
    session.close()


def _words(text: str) -> list[str]:
    """The words of a text, as rendered Markdown keeps them (markup and list numbers go)."""
    return re.findall(r"[A-Za-z]+", text)


def _until(what: str, check: Any, timeout_s: float) -> Any:
    """Poll ``check()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)
    return value


def test_quickstart_ui(browser: Browser, shots: Path, llama_host: str) -> None:
    with notebook_in_chromium(browser, UI_NOTEBOOK, shots, "ui") as nb:
        _ui_steps(nb, llama_host)


def _ui_steps(nb: Notebook, host: str) -> None:
    from playwright.sync_api import expect

    nb.run_done(nb.index("%load_ext llm_nb"))

    # -- 1. one answer streams in --------------------------------------------------------------
    stream = nb.index("-f text")
    nb.run(stream)
    seen: list[str] = []  # output text at each look while the kernel was busy
    deadline = time.monotonic() + LLM_CELL_S
    while not DONE_PROMPT.match((snap := nb.snapshot(stream))["prompt"]):
        assert time.monotonic() < deadline, f"the %%llm cell ran over {LLM_CELL_S} s"
        text = snap["text"].strip()
        if snap["kernel"] == "busy" and text and not text.startswith(WAITING):
            if not seen:
                nb.shot("02-streaming", nb.cell(stream))
            if not seen or text != seen[-1]:
                seen.append(text)
        time.sleep(POLL_S)
    nb.wait_done(stream)
    final = nb.outputs(stream).last.inner_text().strip()
    nb.shot("03-streamed", nb.cell(stream))
    assert len(seen) >= 2, f"saw the answer grow only {len(seen)} time(s) while busy: {seen}"
    lengths = [len(s) for s in seen]
    assert lengths == sorted(lengths) and lengths[0] < len(final), lengths
    for partial in seen:
        assert final.startswith(partial), f"a partial answer is not a prefix: {partial!r}"

    record = nb.printed_json(nb.index("row = llm_nb.stats()"))
    assert record["status"] == "ok"
    assert final == record["text"].strip()
    assert record["tokens"] == record["stats_tokens"] == 100  # ignore_eos: all of -n

    # -- 2. side by side -----------------------------------------------------------------------
    both = nb.index(f"openai:smollm2@{host}")
    nb.run_done(both, LLM_CELL_S * 1000)
    (columns,) = nb.cell(both).evaluate(_COLUMNS_JS)
    nb.shot("04-side-by-side", nb.cell(both))
    records = nb.printed_json(nb.index("for r in both"))
    assert [c["label"] for c in columns] == [
        f"llamacpp:smollm2@{host}",
        f"openai:smollm2@{host}",
    ], columns
    assert [r["provider"] for r in records] == ["llamacpp", "openai"]
    for col, rec in zip(columns, records, strict=True):
        assert rec["status"] == "ok" and rec["text"].strip(), rec
        # The column renders the answer's Markdown: compare the words, not the markup.
        assert _words(col["body"]) == _words(rec["text"]), (col, rec)
        assert "tokens/s" in col["footer"], col

    # -- 3. the model picker -------------------------------------------------------------------
    picker_index = nb.index("picker = llm_nb.model_picker()")
    nb.run_done(picker_index)
    picker = nb.cell(picker_index).locator(".llm-nb-picker")
    expect(picker.locator(".llm-nb-picker-default")).to_contain_text("default for %%llm: local")

    def models(title: str) -> Any:
        group = picker.locator(".llm-nb-picker-group").filter(
            has=nb.page.locator(".llm-nb-picker-group-title", has_text=f"{title} · {host}")
        )
        return group.locator(".llm-nb-picker-models select")

    def status(select: Any) -> tuple[str, str]:
        # ipywidgets shows labels with no-break spaces; an option's value keeps the label
        # as the kernel sent it: "smollm2 — loaded · 96.6 MB · Q4_1".
        option = select.locator("option[value^='smollm2 — ']")
        expect(option).to_have_count(1)
        label = option.get_attribute("value") or ""
        return label, label.split(" — ", 1)[1].split(" · ")[0]

    llamacpp, openai = models("llama-server"), models("OpenAI-compatible server")
    expect(llamacpp).to_be_visible(timeout=30_000)
    expect(openai).to_be_visible()
    assert status(llamacpp)[1] == "loaded"  # llama-server reports its model's load state
    label, state = status(openai)
    assert state == "available"  # the OpenAI wire lists models without a state
    nb.shot("05-picker", picker)
    openai.select_option(value=label)
    expect(picker.locator(".llm-nb-picker-default")).to_contain_text(
        f"default for %%llm: openai:smollm2@{host}", timeout=15_000
    )
    nb.shot("06-picker-selected", picker)

    default_cell = nb.index("-o picked")
    nb.run_done(default_cell, LLM_CELL_S * 1000)
    expect(nb.outputs(default_cell).first).not_to_have_text(re.compile(r"^\s*…?\s*$"))
    nb.shot("07-default-model-answer", nb.cell(default_cell))
    used = nb.printed_json(nb.index("picked.provider"))
    assert (used["provider"], used["host"], used["status"]) == ("openai", host, "ok"), used
    assert used["text"].strip()

    # -- 4. the chat panel's Stop button -------------------------------------------------------
    chat_index = nb.index("chat = llm_nb.chat_panel(")
    nb.run_done(chat_index)
    chat = nb.cell(chat_index).locator(".llm-nb-chat")
    expect(chat).to_be_visible()
    send = chat.locator("button.llm-nb-chat-send")
    stop = chat.locator("button.llm-nb-chat-stop")
    expect(stop).to_be_disabled()
    chat.locator(".llm-nb-chat-prompt textarea").fill("Tell me a long story about the sea.")
    send.click()
    expect(stop).to_be_enabled(timeout=15_000)
    answer = chat.locator(".llm-nb-chat-answer").last

    def partial() -> str:
        text = answer.inner_text().strip()
        return text if len(_words(text)) >= 8 else ""

    _until("the chat answer to start streaming", partial, LLM_CELL_S)
    nb.shot("08-chat-streaming", chat)
    stop.click()
    expect(answer).to_contain_text("[stopped]", timeout=15_000)
    expect(send).to_be_enabled()
    expect(stop).to_be_disabled()
    stopped = answer.inner_text()
    nb.shot("09-chat-stopped", chat)

    turn = nb.printed_json(nb.index("turn = chat.turns[-1]"))
    assert turn["interrupted"] is True, turn
    assert 0 < turn["tokens"] < 400, turn  # stopped well before max_tokens
    assert turn["history"] == ["user", "assistant"], turn  # the partial turn is kept
    assert _words(stopped) == [*_words(turn["text"]), "stopped"], (stopped, turn["text"])
    assert answer.inner_text() == stopped  # still there, unchanged, after another cell ran
    nb.shot("10-done", nb.cell(nb.index("turn = chat.turns[-1]")))


def test_quickstart_notebook(browser: Browser, shots: Path) -> None:
    assert QUICKSTART.is_file(), f"{QUICKSTART.relative_to(REPO)} is missing"
    with notebook_in_chromium(browser, QUICKSTART, shots, "quickstart") as nb:
        for i in nb.run_all_answered():
            for row in nb.cell(i).evaluate(_COLUMNS_JS):
                assert len(row) >= 2 and all(c["body"].strip() for c in row), (i, row)
            nb.shot(f"02-cell-{i:02d}", nb.cell(i))


#: Facts about each readable table in a cell's outputs, as the browser laid it out.
_TABLES_JS = """cell => {
    const area = cell.querySelector('.jp-OutputArea');
    return [...cell.querySelectorAll('.jp-OutputArea-output table')].map(table => {
        const box = table.parentElement.getBoundingClientRect();
        const cells = [...table.querySelectorAll('th, td')];
        const line = parseFloat(getComputedStyle(table.querySelector('td')).lineHeight) || 20;
        return {
            headers: [...table.querySelectorAll('thead th')].map(th => th.innerText.trim()),
            rows: [...table.querySelectorAll('tbody tr')].map(
                tr => [...tr.children].map(td => td.innerText.trim())),
            nowrap: cells.every(c => getComputedStyle(c).whiteSpace === 'nowrap'),
            tallest: Math.max(...[...table.querySelectorAll('tbody td')].map(
                td => td.getBoundingClientRect().height)),
            line: line,
            right: box.right,
            areaRight: area.getBoundingClientRect().right,
            stripes: [...table.querySelectorAll('tbody tr')].slice(0, 2).map(
                tr => getComputedStyle(tr).backgroundColor),
        };
    });
}"""


#: Headers of columns that hold counts: whole numbers, never "41.0".
_COUNT_HEADERS = {"output tokens", "prompt tokens", "ok", "errors", "stopped"}


def test_stats_tables(browser: Browser, shots: Path, llama_host: str) -> None:
    """The tables under side-by-side answers and of ``%llm_stats`` / ``--summary``, in a narrow
    window: key columns with units, one line per row, the model column in the answers' order,
    and nothing wider than the cell (a wide table scrolls inside its own box)."""
    from playwright.sync_api import expect

    both = f"%%llm openai:smollm2@{llama_host} llamacpp:smollm2@{llama_host} -t 0 -n 8"
    sources = [
        "%load_ext llm_nb\nimport llm_nb",
        f"{both}\nName three colours.",
        "%llm_stats",
        "%llm_stats --summary",
    ]
    cells = [
        {"cell_type": "code", "execution_count": None, "id": f"t{i}", "metadata": {},
         "outputs": [], "source": source.splitlines(keepends=True)}
        for i, source in enumerate(sources)
    ]  # fmt: skip
    notebook = {
        "cells": cells,
        "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)",
                                    "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }  # fmt: skip
    path = browser.root / "stats_tables.ipynb"
    path.write_text(json.dumps(notebook, indent=1))
    with notebook_in_chromium(browser, path, shots, "tables") as nb:
        nb.page.set_viewport_size({"width": 900, "height": 900})
        nb.run_done(0)
        nb.run_done(1, LLM_CELL_S * 1000)
        (columns,) = nb.cell(1).evaluate(_COLUMNS_JS)
        (answers,) = nb.cell(1).evaluate(_TABLES_JS)
        assert_columns_fit(nb, 1, "llm")  # long ids in narrow columns break, not overlap
        nb.shot("01-side-by-side", nb.cell(1).locator("table"))
        labels = [c["label"] for c in columns]
        assert [row[0] for row in answers["rows"]] == labels, (answers, labels)
        nb.run_done(2)
        expect(nb.outputs(2).last.locator("table")).to_be_visible()
        (calls,) = nb.cell(2).evaluate(_TABLES_JS)
        nb.shot("02-llm-stats", nb.cell(2))
        nb.run_done(3)
        (summary,) = nb.cell(3).evaluate(_TABLES_JS)
        nb.shot("03-llm-stats-summary", nb.cell(3))
        nb.page.set_viewport_size({"width": 1600, "height": 900})
        nb.shot("04-wide", nb.cell(2))
    for table in (answers, calls, summary):
        assert len(table["headers"]) <= 11, table["headers"]
        assert table["nowrap"] and table["tallest"] < 2 * table["line"], table
        assert table["right"] <= table["areaRight"] + 1, table  # fits the cell
        counts = [i for i, h in enumerate(table["headers"]) if h in _COUNT_HEADERS]
        assert counts, table["headers"]
        assert not any("." in row[i] for row in table["rows"] for i in counts), table
    assert {"TTFT (s)", "tokens/s", "E2E (s)", "output tokens"} <= set(calls["headers"])
    assert calls["headers"][:3] == ["started (UTC)", "model", "status"]  # no index column
    assert {"ok", "errors", "TTFT p50 (s)"} <= set(summary["headers"])
    # JupyterLab's table style: rows striped as in a DataFrame's table.
    assert len(set(calls["stripes"])) == 2, calls["stripes"]
