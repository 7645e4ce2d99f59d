"""Hostile model output: script vectors, and a fake OpenAI-compatible server that answers
with them.

Every vector, if the page ran it, would set ``window.__pwned`` (or retitle the page, or open
a dialog); the tests assert none did, and that the harmless Markdown around the vectors still
renders. The same battery feeds the fast unit tests (tests/test_render_safety.py) and the
real-browser test (tests/browser/test_hostile_output.py).

The server (a :class:`tests.faults.server.FaultServer` play) lists its models at
``/v1/models`` with a hostile model name among them, streams :data:`ANSWER` in small pieces
(so tags are split across chunks and only become tags mid-stream) with
:data:`REASONING` as ``reasoning_content``, and answers a request for :data:`FAILING_MODEL`
with an HTTP 400 whose message is hostile too.
"""

from __future__ import annotations

from tests.browser.fake_openai import Reply, serving

MARK = "window.__pwned"

#: (name, payload): each would set the marker if it ran.
VECTORS: list[tuple[str, str]] = [
    ("img-onerror", f"<img src=x onerror=\"{MARK}='img'\">"),
    ("svg-onload", f"<svg onload=\"{MARK}='svg'\"><circle r=1></circle></svg>"),
    ("script", f"<script>{MARK}='script'</script>"),
    ("iframe-srcdoc", "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>"),
    ("md-link", f"[md link](javascript:{MARK}='mdlink')"),
    ("md-link-case", f"[case link](JaVaScRiPt:{MARK}='case')"),
    ("md-link-entity", f"[entity link](java&#x09;script:{MARK}='entity')"),
    ("md-ref-link", f"[ref link][evil]\n\n[evil]: javascript:{MARK}='ref'\n"),
    ("md-autolink", f"<javascript:{MARK}='autolink'>"),
    ("md-image", f"![img](javascript:{MARK}='mdimage')"),
    ("md-data-link", "[data link](data:text/html,<script>parent.__pwned='data'</script>)"),
    ("md-vbscript", "[vb link](vbscript:msgbox(1))"),
    ("a-href", f"<a href=\"javascript:{MARK}='ahref'\">a href</a>"),
    ("a-href-split", f"<a href=\"java&#x09;script:{MARK}='asplit'\">split</a>"),
    ("a-href-space", f"<a href=\" javascript:{MARK}='aspace'\">space</a>"),
    ("a-data", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>'),
    ("style-import", "<style>@import url('http://127.0.0.1:9/x.css');</style>"),
    ("style-attr", "<p style=\"background:url('javascript:alert(1)')\">styled</p>"),
    ("quote-alt", f'<img src="x" alt=\'"\' onerror="{MARK}=\'quote\'">'),
    ("quote-title", f'<a title="x\\" onmouseover={MARK}=\'title\'">hover</a>'),
    (
        "details-toggle",
        f"<details open ontoggle=\"{MARK}='toggle'\"><summary>s</summary></details>",
    ),
    ("autofocus", f"<input autofocus onfocus=\"{MARK}='focus'\">"),
    ("object", f"<object data=\"javascript:{MARK}='object'\"></object>"),
    ("embed", "<embed src=\"data:text/html,<script>parent.__pwned='embed'</script>\">"),
    ("form", f"<form action=\"javascript:{MARK}='form'\"><button>go</button></form>"),
    (
        "mxss",
        f"<math><mtext><table><mglyph><style><img src=x onerror=\"{MARK}='mxss'\">"
        "</style></mglyph></table></mtext></math>",
    ),
    ("title", "<title>PWNED</title><img src=x onerror=\"document.title='PWNED'\">"),
    ("dialog", "<img src=x onerror=\"alert('PWNED')\">"),
    ("mathjax-href", f"$\\href{{javascript:{MARK}='mathjax'}}{{math link}}$"),
]

#: Markdown that must keep rendering around the vectors.
HARMLESS = """# Safe heading

Some **bold words**, *emphasis* and ~~struck~~ text, and [a safe link](https://example.com/docs).

- first item
- second item

| col A | col B |
|:------|------:|
| a1    | b1    |

```python
print("fenced <code>")
```

Inline math $E = mc^2$ and display math:

$$
\\int_0^1 x\\,dx = \\frac{1}{2}
$$
"""

#: What the fake server answers: the harmless Markdown, then every vector on its own line.
ANSWER = HARMLESS + "\n" + "\n\n".join(f"{name}: {payload}" for name, payload in VECTORS) + "\n"
REASONING = f"Thinking <img src=x onerror=\"{MARK}='reasoning'\"> about **it**."
#: A model name as a server might list it.
MODEL_NAME = f"evil<img src=x onerror=\"{MARK}='model'\">"
FAILING_MODEL = "failing"
ERROR_MESSAGE = f"<img src=x onerror=\"{MARK}='error'\"> \x1b]0;PWNED\x07\x1b[2J bad request"
#: The visible words the rendered answer must still show.
VISIBLE = ["Safe heading", "bold words", "first item", "col A", "b1", "a safe link"]
#: Characters per streamed piece: small, so that tags are split across chunks.
PIECE = 7


def pieces(text: str, size: int = PIECE) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _reply(model: str) -> Reply | None:
    if model == FAILING_MODEL:
        return None
    return Reply(MODEL_NAME, pieces(ANSWER), reasoning=pieces(REASONING), delay_s=0.002)


#: The fake server's answer to every request.
play = serving(
    [MODEL_NAME, "hostile", FAILING_MODEL],
    _reply,
    error_message=ERROR_MESSAGE,
    chat_id="chatcmpl-hostile",
)
