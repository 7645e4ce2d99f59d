"""Model and server output through every sink that draws it: nothing executable survives,
and harmless Markdown still renders. No llama-server needed (a fake OpenAI-compatible server
on 127.0.0.1 answers with the battery in tests/browser/hostile.py), so a regression fails in
``-m "not server"`` runs; tests/browser/test_hostile_output.py proves the same in a real browser.

"Nothing executable" is checked on the parsed HTML (html.parser, which decodes entities as a
browser does): no script-capable element, no ``on*`` attribute, no ``srcdoc``, no ``style``
value that could load a URL, and no URL attribute whose scheme is not http, https or mailto.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb import __main__ as cli
from llm_nb import _tables
from llm_nb._eval._result import EvalResult
from llm_nb._magics._args import FORMATS
from llm_nb._magics._errors import MagicError
from llm_nb._magics._models import models_frame
from llm_nb._present._display import RenderBudget
from llm_nb._present._render import Column, answer_bundle, columns_bundle
from llm_nb._safe_html import _clean_markdown, answer_html, clean_html, escape, markdown_html
from llm_nb._session import registry, run_sync
from llm_nb._terminal import ControlStripper, strip_controls
from llm_nb._types import ChatResponse
from llm_nb._widgets._parts import AnswerView, ErrorLine
from llm_nb.providers import OpenAIProvider
from tests.browser import hostile
from tests.browser.hostile import (
    ANSWER,
    ERROR_MESSAGE,
    FAILING_MODEL,
    HARMLESS,
    MODEL_NAME,
    REASONING,
    VECTORS,
)
from tests.faults import plays
from tests.faults.server import FaultServer
from tests.faults.wires import OPENAI

#: Elements that can run script, load a document or take input; none may reach the page.
FORBIDDEN_TAGS = {
    "script", "iframe", "frame", "frameset", "object", "embed", "applet", "style", "link",
    "meta", "base", "svg", "math", "form", "input", "button", "textarea", "select", "title",
    "template", "noscript", "xmp", "plaintext", "noembed", "portal", "marquee",
}  # fmt: skip
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "poster", "background", "cite"}
SAFE_URL = re.compile(r"^(https?:|mailto:)", re.I)


class _Parsed(HTMLParser):
    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def shown(self) -> str:
        """The text a reader sees (entities decoded)."""
        return "".join(self.text)


def assert_inert(html: str) -> _Parsed:
    """Fail on anything in ``html`` a browser could run or load outside http/https/mailto."""
    parsed = _Parsed(html)
    for tag, attrs in parsed.tags:
        assert tag not in FORBIDDEN_TAGS, (tag, html)
        for name, value in attrs:
            value = value or ""
            assert not name.startswith("on"), (tag, name, value)
            assert name not in ("srcdoc", "xlink:href", "formaction"), (tag, name)
            if name == "style":
                assert not re.search(r"url|expression|javascript|@import|\\", value, re.I), value
            if name in URL_ATTRIBUTES:
                assert SAFE_URL.match(value.strip()), (tag, name, value)
    return parsed


def assert_frame_inert(html: str | None) -> _Parsed:
    """:func:`assert_inert` for a DataFrame's HTML, less the style block pandas itself puts
    first (static CSS with no ``<`` in it, so an escaped cell cannot fake its end)."""
    assert html is not None
    return assert_inert(re.sub(r"^<div>\s*<style scoped>[^<]*</style>", "<div>", html))


def visible(html: str) -> str:
    return _Parsed(html).shown


# -- the rendering functions -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "payload"), VECTORS, ids=[n for n, _ in VECTORS])
def test_each_vector_is_inert_as_markdown_and_as_html(name: str, payload: str) -> None:
    for text in (payload, f"before {payload} after", f"- item {payload}", f"> {payload}"):
        assert_inert(markdown_html(text))
        assert_inert(clean_html(text))
        assert_inert(answer_html(text, reasoning=text, note=text))


def test_raw_html_in_markdown_is_visible_text() -> None:
    shown = visible(markdown_html(ANSWER))
    for snippet in ("<img src=x onerror=", "<script>window.__pwned", "<iframe srcdoc=", "<svg"):
        assert snippet in shown, snippet
    # Unsafe link targets stay as their Markdown text; nothing became a link to them.
    assert "[md link](javascript:" in shown
    assert "<javascript:window.__pwned" in shown


def test_harmless_markdown_still_renders() -> None:
    out = markdown_html(HARMLESS)
    tags = [t for t, _ in assert_inert(out).tags]
    for tag in ("h1", "strong", "em", "s", "ul", "li", "table", "th", "td", "pre", "code", "a"):
        assert tag in tags, tag
    assert '<a href="https://example.com/docs" rel="noopener noreferrer nofollow">' in out
    # Alignment kept (unaligned columns left-aligned, as JupyterLab's own Markdown does).
    assert '<th style="text-align:left">col A</th>' in out
    assert '<th style="text-align:right">col B</th>' in out
    # Fenced code: escaped, and coloured with the theme's editor colours.
    code = out[out.index("<pre><code>") : out.index("</code></pre>")]
    assert visible(code) == 'print("fenced <code>")\n'
    assert '<span style="color:var(--jp-mirror-editor-string-color)">' in code
    assert '<span style="color:var(--jp-mirror-editor-builtin-color)">print</span>' in code
    # Math keeps its TeX and delimiters for the frontend's MathJax (no Markdown inside it).
    assert "$E = mc^2$" in out
    assert "$$\n\\int_0^1 x\\,dx = \\frac{1}{2}\n$$" in visible(out)
    assert "\\(a_1 * b_2\\)" in markdown_html("see \\(a_1 * b_2\\) here")
    assert "\\[\nx_*\n\\]" in markdown_html("\\[\nx_*\n\\]")
    assert markdown_html("mail <me@example.com>").count('href="mailto:me@example.com"') == 1


def test_html_format_keeps_structure_and_drops_the_rest() -> None:
    out = clean_html(
        '<h2>T</h2><p><b>b</b> <a href="https://x.org">x</a> <img src="https://x.org/i.png">'
        '<a href="/api/contents">rel</a> <img src="data:image/png;base64,AA"></p>'
        "<table><tr><td>c</td></tr></table><details><summary>s</summary>d</details>"
    )
    assert_inert(out)
    for kept in ("<h2>T</h2>", "<b>b</b>", '<a href="https://x.org"', '<img src="https://x.org',
                 "<td>c</td>", "<summary>s</summary>"):  # fmt: skip
        assert kept in out, kept
    assert "/api/contents" not in out and "data:" not in out  # relative and data: URLs go


@pytest.mark.parametrize("fmt", FORMATS)
def test_answer_bundle_every_format(fmt: str) -> None:
    bundle = answer_bundle(ANSWER, fmt, reasoning=REASONING, note=f"error: {ERROR_MESSAGE}")
    assert "text/markdown" not in bundle  # a live Markdown output would be trusted as-is
    if "text/html" not in bundle:
        return
    shown = assert_inert(bundle["text/html"]).shown
    if fmt == "code":  # the fenced block only
        assert shown.startswith('print("fenced <code>")')
    else:
        assert "Safe heading" in shown and "bold words" in shown


def test_reasoning_is_folded_and_escaped() -> None:
    out = answer_bundle("answer", "markdown", reasoning=REASONING)["text/html"]
    assert out.startswith("<details><summary>reasoning</summary>")
    assert_inert(out)
    assert "<img src=x onerror=" in visible(out)


def test_every_prefix_of_a_streamed_answer_is_inert() -> None:
    """Each display frame renders the answer so far: a tag split across chunks must not
    become live when its end arrives, nor be live while it is cut."""
    for end in range(0, len(ANSWER) + 3, 3):
        prefix = ANSWER[:end]
        assert_inert(answer_bundle(prefix, "markdown", reasoning=REASONING[:end])["text/html"])
        assert_inert(answer_bundle(prefix, "html")["text/html"])
        if end % hostile.PIECE == 0:  # the frames a stream of PIECE-sized chunks can show
            columns = [Column(MODEL_NAME, prefix, "ttft"), Column("b", prefix[::-1], "f")]
            for fmt in ("markdown", "html"):
                assert_inert(columns_bundle(columns, fmt)["text/html"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_side_by_side_every_format(fmt: str) -> None:
    columns = [
        Column(MODEL_NAME, ANSWER, f"ttft 1 s {ERROR_MESSAGE}"),
        Column("failing", "", "", f"error: {ERROR_MESSAGE}", failed=True),
    ]
    out = columns_bundle(columns, fmt)["text/html"]
    shown = assert_inert(out).shown
    assert MODEL_NAME in shown and ERROR_MESSAGE.split(" ")[0] in shown  # labels as text
    assert "bold words" in shown
    if fmt == "markdown":
        assert "<strong>bold words</strong>" in out


def test_code_blocks_of_unknown_languages_are_plain() -> None:
    assert (
        markdown_html("```nosuchlang\n<b>x</b>\n```")
        == "<pre><code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n"
    )
    assert markdown_html("```\n<b>x</b>\n```") == "<pre><code>&lt;b&gt;x&lt;/b&gt;\n</code></pre>\n"
    # A hostile "language" is only a lexer name to look up.
    assert_inert(markdown_html('```"><img src=x onerror=alert(1)>\nx\n```'))
    # The sanitizer keeps colours, never a style that could load something.
    hostile_style = '<span style="color:red;background:url(http://x/)">t</span>'
    assert assert_inert(_clean_markdown(hostile_style)).shown == "t"


def test_render_budget_bounds_the_share_of_time_spent_drawing() -> None:
    """A long answer's frames get costlier; live frames then come less often (the final
    one always comes), so drawing takes at most RenderBudget.SHARE of the time."""
    budget = RenderBudget()
    assert budget.due(False)
    started = time.perf_counter()
    markdown_html(HARMLESS * 40)
    drawn = time.perf_counter()
    budget.spent(started)
    # The frame cost at least drawn - started; the budget may count more (the time until it
    # looked at the clock), never less. Only bounds that hold whatever the machine's load
    # adds between two lines are checked.
    cost = drawn - started
    rest = cost * (1 / RenderBudget.SHARE - 1)
    assert budget.due(True)
    assert not budget.due(False) or time.perf_counter() - drawn >= rest * 0.99
    while not budget.due(False):
        time.sleep(0.001)
    waited = time.perf_counter() - drawn
    assert waited >= rest * 0.99, (waited, cost)


def test_escape_quotes_for_attributes() -> None:
    assert escape("\"'<>&") == "&quot;&#x27;&lt;&gt;&amp;"


# -- panels, tables, reprs ---------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[str]:
    """The hostile server's host; its providers are closed and forgotten afterwards."""
    with FaultServer(hostile.play) as srv:
        host = srv.url.split("://", 1)[1]
        yield host
        reg = registry()
        for p in [p for p in reg.providers() if p.host == host]:
            run_sync(p.aclose())
        with reg._lock:
            for key in [k for k, p in reg._providers.items() if p.host == host]:
                del reg._providers[key]


def test_record_repr_and_widget_output(server: str) -> None:
    record = llm_nb.chat(f"openai:hostile@{server}", "hi")
    assert isinstance(record, ChatResponse) and record.text == ANSWER
    assert record.reasoning == REASONING and record.model_reported == MODEL_NAME
    assert "bold words" in assert_inert(record._repr_html_()).shown
    view = AnswerView()
    view.show(record, final=True, note="stopped")
    assert view.text == ANSWER + "\n[stopped]"
    assert "bold words" in assert_inert(view.value).shown
    # Every live frame goes through the value trait (inserted as HTML): the waiting mark
    # and each partial answer, cut anywhere, are sanitized too.
    record.reasoning = ""
    for end in range(0, len(ANSWER) + 1, 7):
        record.text = ANSWER[:end]
        view.show(record, final=False)
        assert view.text == record.text or (end == 0 and view.text == "…")
        assert_inert(view.value)


def test_error_line_escapes_the_server_message(server: str) -> None:
    with pytest.raises(llm_nb.LLMError) as failed:
        llm_nb.chat(f"openai:{FAILING_MODEL}@{server}", "hi")
    line = ErrorLine()
    line.show(failed.value)
    assert "<img src=x onerror=" in assert_inert(line.widget.value).shown
    # The magics' one-line error (a terminal's too) carries no escape sequence of the server.
    shown = MagicError(str(failed.value))._render_traceback_()[0]
    assert "\x1b]" not in shown and "\x1b[2J" not in shown and "\x07" not in shown


def test_models_table_and_stats_escape_model_names(server: str) -> None:
    registry().add(OpenAIProvider(f"http://{server}/v1"))
    frame = models_frame(discover=False)
    assert MODEL_NAME in set(frame["model"])
    html = frame._repr_html_()
    assert html is not None and "&lt;img" in html
    assert MODEL_NAME in assert_frame_inert(html).shown
    with llm_nb.new_run() as run_id:
        llm_nb.chat(f"openai:{MODEL_NAME}@{server}", "hi")
    stats = llm_nb.stats(run_id)
    assert len(stats) == 1
    assert MODEL_NAME in assert_frame_inert(stats._repr_html_()).shown
    # The readable tables (%llm_stats, summary(), the side-by-side and compare tables):
    # short and long (cut, with the whole name in a title attribute) names alike.
    summary = llm_nb.summary(run_id)
    assert MODEL_NAME in assert_inert(summary._repr_html_()).shown
    # The text form cuts a long id with "…" (in full in the frame and the HTML's title).
    assert f"openai:{MODEL_NAME}"[:40] in repr(summary) and "…" in repr(summary)
    for name in (MODEL_NAME, MODEL_NAME[:30]):
        frame = stats.assign(model=name)
        for view in (_tables.CALLS_VIEW, _tables.ALL_CALLS_VIEW):
            assert name in assert_inert(view.table(frame).html).shown
        answers = _tables.answers_table(frame, list(frame["call_id"]), [name])
        assert answers is not None and name in assert_inert(answers.html).shown


def test_evaluate_result_repr(server: str) -> None:
    result = llm_nb.evaluate(
        ["hi"], [f"openai:{MODEL_NAME}@{server}"], warmup=0, progress=False,
        run=f"run<img src=x onerror=\"{hostile.MARK}='run'\">",
    )  # fmt: skip
    assert isinstance(result, EvalResult) and result.frame["answer"].iloc[0] == ANSWER
    html = result._repr_html_()
    shown = assert_inert(html).shown
    assert MODEL_NAME in shown and "run<img src=x" in shown


async def test_chat_and_compare_panels(server: str) -> None:
    chat = llm_nb.chat_panel(f"openai:{MODEL_NAME}@{server}")
    chat.send("hi")
    await chat.wait()
    sinks = [chat.answer.value, chat.saved.bundle["text/html"]]
    sinks += [child.value for child in chat.history.children[0].children[:2]]
    chat.model.value = f"openai:{FAILING_MODEL}@{server}"
    chat.send("again")
    await chat.wait()
    assert chat.error.text and "bad request" in chat.error.text
    sinks += [chat.error.widget.value, chat.saved.bundle["text/html"]]
    for html in sinks:
        assert_inert(html)
    assert "bold words" in visible(chat.saved.bundle["text/html"])

    compare = llm_nb.compare_panel(
        [f"openai:{MODEL_NAME}@{server}", f"openai:{FAILING_MODEL}@{server}"]
    )
    await compare.wait()
    compare.run("hi")
    await compare.wait()
    titles = [col.children[0].value for col in compare.columns.children]
    answers = [col.children[1].value for col in compare.columns.children]
    for html in [*titles, *answers, compare.table.value, compare.error.widget.value,
                 compare.saved.bundle["text/html"]]:  # fmt: skip
        assert_inert(html)
    assert MODEL_NAME in visible(titles[0]) and "bold words" in visible(answers[0])
    assert "bad request" in compare.error.text


# -- the terminal ------------------------------------------------------------------------------

TERMINAL_TOKENS = [
    "ok \x1b]0;PW", "NED\x07 \x1b[2", "J\x1b[31mred\x1b[0m \x1b]52;c;ZXZpbA==\x1b", "\\ ",
    "\x1b]8;;http://evil.example\x07link\x1b]8;;\x07 \x9b31m c1 \rback\x08 done",
]  # fmt: skip


def _no_controls(text: str) -> None:
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)


def test_strip_controls() -> None:
    text = "".join(TERMINAL_TOKENS)
    out = strip_controls(text)
    assert out == "ok  red  link 31m c1 back done"
    for size in (1, 2, 3, 5):  # split anywhere, as a stream may: the same result
        stripper = ControlStripper()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        assert "".join(stripper.feed(p) for p in pieces) + stripper.flush() == out
    assert strip_controls("tab\tand\nnewline") == "tab\tand\nnewline"
    unfinished = ControlStripper()
    assert unfinished.feed("a\x1b]0;never ends") == "a"
    assert unfinished.flush() == "0;never ends"  # its introducer goes, the text stays


def test_cli_strips_escape_sequences(capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer(plays.answer(OPENAI, TERMINAL_TOKENS)) as srv:
        host = srv.url.split("://", 1)[1]
        assert cli.main(["-m", f"openai:m@{host}", "hi"]) == 0
    out, err = capsys.readouterr()
    assert out == "ok  red  link 31m c1 back done\n"
    _no_controls(out)
    _no_controls(err)


def test_cli_strips_escape_sequences_from_server_errors(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["-m", f"openai:{FAILING_MODEL}@{server}", "hi"]) == 1
    _, err = capsys.readouterr()
    assert "bad request" in err
    _no_controls(err.rstrip("\n"))


def test_terminal_ipython_prints_without_escape_sequences(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    with FaultServer(plays.answer(OPENAI, TERMINAL_TOKENS, delay_s=0.01)) as srv:
        host = srv.url.split("://", 1)[1]
        shell.run_cell_magic("llm", f"openai:m@{host}", "hi")
        shell.run_cell_magic("llm", f"openai:m@{host} openai:n@{host}", "hi")
    out = capsys.readouterr().out
    assert out.count("ok  red  link 31m c1 back done") == 3
    _no_controls(out)
