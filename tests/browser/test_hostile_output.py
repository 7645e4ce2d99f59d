"""A hostile server in a real browser: no answer, model name or error message runs script.

JupyterLab (127.0.0.1, a temporary root) in Debian's Chromium, as test_jupyterlab.py sets
it up; the model server is the fake OpenAI-compatible server of tests/browser/hostile.py,
which answers with a battery of script vectors (``img onerror``, ``svg onload``,
``<script>``, ``iframe srcdoc``, ``javascript:``/``data:``/``vbscript:`` links in Markdown and
in ``<a href>``, ``<style>@import``, attribute-quoting tricks, ``details ontoggle``,
``autofocus onfocus``, mXSS, a MathJax ``\\href``...), streamed in 7-character pieces so tags
only become tags mid-stream, lists a hostile model name at ``/v1/models``, and fails one model
with a hostile error message.

The notebook drives every sink: ``%%llm`` in each format (markdown, text, code, json, html),
side by side (markdown and html, with a failing column), a failing ``%%llm``, ``%llm_models``,
``%llm_stats``, the model picker, the chat panel (an answer, then an error), the compare panel
(the hostile model name as a column, a failing model), ``evaluate()``'s result and a
``ChatResponse``'s repr. After each, the page must show no sign of a payload having run:
``window.__pwned`` unset, the title unchanged, no dialog opened; and the DOM of the outputs
must hold no script-capable element, no ``on*`` attribute and no link or image URL other than
http, https or mailto. Links left without a target are clicked and hovered, to show that they
are inert. The harmless Markdown around the payloads must still render (heading, list, table,
code block, typeset math).

Screenshots go to test-artifacts/browser/hostile-*.png.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import hostile
from tests.browser.page import DONE_PROMPT, Browser, Notebook, kernel_env, require_browser
from tests.faults.server import FaultServer

pytestmark = [pytest.mark.server, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts" / "browser"
NOTEBOOK = "hostile.ipynb"
PREFIX = "hostile"
#: Most seconds one cell may take (the fake server answers at once; the machine may be busy).
CELL_S = 120

#: What a payload would leave behind, read in one go.
_MARKERS_JS = """() => ({
    pwned: window.__pwned === undefined ? null : String(window.__pwned),
    parentPwned: window.parent.__pwned === undefined ? null : String(window.parent.__pwned),
    title: document.title,
})"""

#: Everything in the outputs' DOM that could run script or load a non-web URL.
_DOM_JS = """() => {
    const bad = [];
    const areas = document.querySelectorAll('.jp-OutputArea-output, .jp-OutputArea-child');
    const forbidden = 'script,iframe,frame,object,embed,applet,form,input[autofocus],svg,math,'
        + 'base,link,meta';
    for (const area of areas) {
        for (const el of area.querySelectorAll(forbidden)) {
            // MathJax draws typeset math with its own svg/math elements: those are ours.
            if (el.closest('mjx-container')) continue;
            // ipywidgets' own controls are inputs too; a model's <input autofocus> is not.
            if (el.tagName === 'INPUT' && el.closest('.jupyter-widgets')) continue;
            bad.push(el.outerHTML.slice(0, 200));
        }
        for (const el of area.querySelectorAll('*')) {
            for (const attr of el.attributes) {
                const name = attr.name.toLowerCase();
                if (name.startsWith('on') || name === 'srcdoc') {
                    bad.push(el.outerHTML.slice(0, 200));
                }
                if (['href', 'src', 'action', 'formaction', 'data', 'xlink:href'].includes(name)) {
                    const value = attr.value.trim().toLowerCase();
                    // blob: and data:image are what JupyterLab itself makes of images it renders
                    const ours = value.startsWith('blob:') || value.startsWith('data:image/png')
                        // JupyterLab's plain-text renderer links data: URLs itself (in print()
                        // output too); browsers refuse to open a data: page from a link.
                        || (value.startsWith('data:') && el.closest('.jp-RenderedText'));
                    if (!/^(https?:|mailto:)/.test(value) && !ours && !value.startsWith('#')) {
                        bad.push(name + '=' + attr.value.slice(0, 100));
                    }
                }
            }
        }
        for (const style of area.querySelectorAll('style')) {
            if (/@import|url\\(|expression|javascript/i.test(style.textContent)) {
                bad.push(style.outerHTML.slice(0, 200));
            }
        }
    }
    return bad;
}"""


def _cells(host: str) -> list[str]:
    """The notebook's code cells (a markdown first cell would make no output)."""
    ok = f"openai:hostile@{host}"
    evil = f"openai:{hostile.MODEL_NAME}@{host}"
    failing = f"openai:{hostile.FAILING_MODEL}@{host}"
    ask = "Answer with the battery."
    return [
        "%load_ext llm_nb\nimport llm_nb",
        f"%%llm {ok}\n{ask}",
        f"%%llm -f text {ok}\n{ask}",
        f"%%llm -f code {ok}\n{ask}",
        f"%%llm -f json {ok}\n{ask}",
        f"%%llm -f html {ok}\n{ask}",
        f"%%llm {shlex.quote(evil)} {ok}\n{ask}",
        f"%%llm {ok} {failing} -f html\n{ask}",
        f"%%llm {failing}\n{ask}",
        "%llm_models refresh",
        "%llm_stats",
        "picker = llm_nb.model_picker()\npicker",
        f"chat = llm_nb.chat_panel({ok!r})\nchat",
        f"compare = llm_nb.compare_panel([{evil!r}, {failing!r}])\ncompare",
        f"llm_nb.evaluate([{ask!r}], [{evil!r}], warmup=0)",
        f"record = llm_nb.chat({ok!r}, {ask!r})\nrecord",
    ]


def _notebook(host: str) -> dict[str, Any]:
    cells = [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": f"cell-{i:02d}",
            "metadata": {},
            "outputs": [],
            "source": source.splitlines(keepends=True),
        }
        for i, source in enumerate(_cells(host))
    ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def shots() -> Path:
    """test-artifacts/browser/, emptied of an earlier run's hostile-* files only."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob(f"{PREFIX}-*"):
        old.unlink()
    return SHOTS


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with FaultServer(hostile.play) as srv:
        yield srv.url.split("://", 1)[1]


@pytest.fixture(scope="module")
def browser(server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    home = tmp_path_factory.mktemp("browser-hostile")
    root = home / "root"
    root.mkdir()
    (root / NOTEBOOK).write_text(json.dumps(_notebook(server), indent=1))
    # The hostile server is the one configured provider, so %llm_models and the picker
    # list its models; no other server comes from the environment.
    env = kernel_env(None, OPENAI_BASE_URL=f"http://{server}/v1")
    session = Browser(root, home, env)
    yield session
    session.close()


class Watch:
    """The page's markers, dialogs and output DOM, checked after every step."""

    def __init__(self, nb: Notebook) -> None:
        self.nb = nb
        self.title = ""
        self.dialogs: list[str] = []
        nb.page.on("dialog", self._dialog)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def check(self, step: str) -> None:
        page = self.nb.page
        page.wait_for_timeout(300)  # an onerror/onload fires within a frame or two
        markers = page.evaluate(_MARKERS_JS)
        assert markers["pwned"] is None and markers["parentPwned"] is None, (step, markers)
        assert "PWNED" not in markers["title"], (step, markers)
        assert not self.dialogs, (step, self.dialogs)
        bad = page.evaluate(_DOM_JS)
        assert not bad, (step, bad)


def test_hostile_output_runs_no_script(browser: Browser, shots: Path, server: str) -> None:
    require_browser()
    with browser.tab() as page:
        nb = Notebook(page, browser.root / NOTEBOOK, shots, PREFIX)
        try:
            nb.open(browser.lab.lab_url(NOTEBOOK, workspace=PREFIX))
            watch = Watch(nb)
            _steps(nb, watch, server)
        except BaseException:
            nb.save_failure(browser.lab.log_tail(400))
            raise
        finally:
            nb.save_logs()


def _steps(nb: Notebook, watch: Watch, host: str) -> None:
    from playwright.sync_api import expect

    ms = CELL_S * 1000
    nb.run_done(0, ms)

    # -- %%llm in every format ------------------------------------------------------------
    markdown = nb.index(f"%%llm openai:hostile@{host}\n")
    nb.run_done(markdown, ms)
    out = nb.outputs(markdown).first
    for words in hostile.VISIBLE:
        expect(out).to_contain_text(words)
    expect(out.locator("h1")).to_have_text("Safe heading")
    expect(out.locator("table th").first).to_have_text("col A")
    expect(out.locator("pre code")).to_contain_text('print("fenced <code>")')
    expect(out.locator("details summary")).to_have_text("reasoning")
    # Raw HTML is visible as text, and the math was typeset by JupyterLab's MathJax.
    expect(out).to_contain_text("<img src=x onerror=")
    expect(out.locator("mjx-container").first).to_be_attached(timeout=30_000)
    _poke_dead_links(nb, out)
    watch.check("%%llm markdown")
    nb.shot("01-markdown", out)
    out.locator("h1").scroll_into_view_if_needed()
    nb.shot("02-markdown-top", out.locator("h1"))

    for fmt in ("text", "code", "json", "html"):
        index = nb.index(f"%%llm -f {fmt} openai:hostile@")
        nb.run_done(index, ms)
        shown = nb.outputs(index).first
        expect(shown).to_contain_text("print(" if fmt == "code" else "bold words")
        if fmt == "html":
            _poke_dead_links(nb, shown)
        if fmt == "text":
            _click_data_links(nb, shown)
        watch.check(f"%%llm -f {fmt}")
        nb.shot(f"03-format-{fmt}", shown)

    # -- side by side, and errors ---------------------------------------------------------
    both = nb.index(f"%%llm {shlex.quote(f'openai:{hostile.MODEL_NAME}@{host}')} ")
    nb.run_done(both, ms)
    expect(nb.outputs(both).first).to_contain_text(hostile.MODEL_NAME)
    watch.check("side by side")
    nb.shot("04-side-by-side", nb.cell(both))

    html_both = nb.index(" -f html\n")
    _run_failing(nb, html_both, ms)
    expect(nb.outputs(html_both).first).to_contain_text("bad request")
    watch.check("side by side html with an error")
    nb.shot("05-side-by-side-html-error", nb.cell(html_both))

    failing = nb.index(f"%%llm openai:{hostile.FAILING_MODEL}@{host}\n")
    _run_failing(nb, failing, ms)
    expect(nb.outputs(failing).last).to_contain_text("bad request")
    watch.check("a failing %%llm")
    nb.shot("06-error", nb.cell(failing))

    # -- tables ---------------------------------------------------------------------------
    models = nb.index("%llm_models")
    nb.run_done(models, ms)
    expect(nb.outputs(models).last).to_contain_text(hostile.MODEL_NAME)
    watch.check("%llm_models")
    nb.shot("07-models", nb.cell(models))

    stats = nb.index("%llm_stats")
    nb.run_done(stats, ms)
    expect(nb.outputs(stats).last.locator("table")).to_be_visible()
    watch.check("%llm_stats")
    nb.shot("08-stats", nb.cell(stats))

    # -- panels ---------------------------------------------------------------------------
    picker_index = nb.index("llm_nb.model_picker()")
    nb.run_done(picker_index, ms)
    picker = nb.cell(picker_index).locator(".llm-nb-picker")
    option = picker.locator(".llm-nb-picker-models option").filter(has_text="evil<img")
    expect(option).to_have_count(1, timeout=30_000)
    option.click()
    expect(picker.locator(".llm-nb-picker-default")).to_contain_text("evil<img", timeout=15_000)
    watch.check("model picker")
    nb.shot("09-picker", picker)

    chat_index = nb.index("llm_nb.chat_panel(")
    nb.run_done(chat_index, ms)
    chat = nb.cell(chat_index).locator(".llm-nb-chat")
    chat.locator(".llm-nb-chat-prompt textarea").fill("<img src=x onerror=\"window.__pwned='p'\">")
    chat.locator("button.llm-nb-chat-send").click()
    answer = chat.locator(".llm-nb-chat-answer").last
    expect(answer).to_contain_text("mathjax-href", timeout=ms)
    expect(chat.locator("button.llm-nb-chat-send")).to_be_enabled(timeout=ms)
    _poke_dead_links(nb, answer)
    watch.check("chat panel")
    nb.shot("10-chat", chat)
    chat.locator(".llm-nb-chat-model input").fill(f"openai:{hostile.FAILING_MODEL}@{host}")
    chat.locator(".llm-nb-chat-prompt textarea").fill("again")
    chat.locator("button.llm-nb-chat-send").click()
    expect(chat.locator(".llm-nb-chat-error")).to_contain_text("bad request", timeout=ms)
    watch.check("chat panel error")
    nb.shot("11-chat-error", chat)

    compare_index = nb.index("llm_nb.compare_panel(")
    nb.run_done(compare_index, ms)
    compare = nb.cell(compare_index).locator(".llm-nb-compare")
    compare.locator(".llm-nb-compare-prompt textarea").fill("Answer with the battery.")
    compare.locator("button.llm-nb-compare-run").click()
    expect(compare.locator(".llm-nb-compare-stats table")).to_be_visible(timeout=ms)
    expect(compare.locator(".llm-nb-compare-title").first).to_contain_text("evil<img")
    expect(compare.locator(".llm-nb-compare-error")).to_contain_text("bad request")
    watch.check("compare panel")
    nb.shot("12-compare", compare)

    # -- evaluate() and a record's repr ---------------------------------------------------
    evaluate = nb.index("llm_nb.evaluate(")
    nb.run_done(evaluate, ms)
    expect(nb.outputs(evaluate).last).to_contain_text("evil<img")
    watch.check("evaluate() result")
    nb.shot("13-evaluate", nb.cell(evaluate))

    record = nb.index("record = llm_nb.chat(")
    nb.run_done(record, ms)
    expect(nb.outputs(record).last.locator("h1")).to_have_text("Safe heading")
    watch.check("ChatResponse repr")
    nb.shot("14-record", nb.cell(record))

    # Everything again, now that every output has been on screen for a while (and the panels'
    # saved outputs were updated).
    watch.check("the end")


def _poke_dead_links(nb: Notebook, scope: Any) -> None:
    """Click and hover every link the sanitizer left without a target (a payload's), and the
    MathJax link: none may run anything."""
    links = scope.locator("a:not([href])")
    for i in range(links.count()):
        link = links.nth(i)
        link.scroll_into_view_if_needed()
        link.hover()
        link.click()
    for text in ("hover", "math link"):
        target = scope.get_by_text(text, exact=True)
        if target.count():
            target.first.hover()
            target.first.click()


def _click_data_links(nb: Notebook, scope: Any) -> None:
    """Click the data: links JupyterLab's text renderer made: the browser opens (at most) a
    blank tab; nothing runs in the notebook's page."""
    links = scope.locator("a[href^='data:']")
    assert links.count() >= 1  # the battery's data: URLs, linked by JupyterLab itself
    for i in range(links.count()):
        links.nth(i).click()
    for page in nb.page.context.pages:
        if page is not nb.page:
            page.close()


def _run_failing(nb: Notebook, index: int, timeout_ms: float) -> None:
    """Run a cell that ends with llm_nb's one-line error (which JupyterLab shows as stderr)."""
    from playwright.sync_api import expect

    nb.run(index)
    expect(nb.prompt(index)).to_have_text(DONE_PROMPT, timeout=timeout_ms)
    expect(nb.outputs(index).last).to_contain_text("llm_nb: ")
