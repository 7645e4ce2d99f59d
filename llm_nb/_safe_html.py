"""Untrusted text as safe HTML: answers, reasoning, model names, server messages.

JupyterLab and Notebook 7 trust the outputs a cell makes in the running session: they render
their HTML and Markdown without sanitizing it, so an ``<img onerror=…>`` in an answer would run
in the user's Jupyter origin (which can open a terminal). Everything a model or a server wrote
therefore reaches the page through this module, behind two walls:

1. Markdown is rendered here, in Python, by markdown-it-py (CommonMark plus GFM tables and
   strikethrough) with raw HTML off, so a tag in an answer shows as visible text, and with its
   link check, so ``javascript:``/``vbscript:``/``data:`` links stay text. Math (``$…$``,
   ``$$…$$``, ``\\(…\\)``, ``\\[…\\]``) is kept as its TeX source with its delimiters, so the
   frontend's MathJax typesets it as it does in Markdown.
   Code blocks are coloured by ``_highlight``.
2. Every fragment then goes through nh3 (Ammonia) with a strict allowlist: no script, style,
   iframe, object, embed, form, svg or math element, no event-handler attribute, ``style``
   only on table cells and code spans and only with text-align/color/font-weight in it, and
   only absolute http, https and mailto URLs.

``-f html`` answers skip step 1 and get step 2 with Ammonia's default tags and no ``style``
at all (:func:`clean_html`). Plain text for HTML goes through :func:`escape`. markdown-it-py,
nh3 and Pygments are imported on first use.
"""

from __future__ import annotations

import html
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nh3
    from markdown_it import MarkdownIt
    from markdown_it.rules_core import StateCore

#: The only URL schemes a link or image may keep; relative URLs are dropped too, since in a
#: notebook they point at the Jupyter server itself.
URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

#: What rendered Markdown can contain (and our own wrappers: details, div, span).
_MARKDOWN_TAGS = frozenset(
    {
        "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "em", "strong", "s", "del",
        "code", "pre", "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody",
        "tr", "th", "td", "details", "summary", "div", "span",
    }
)  # fmt: skip
_MARKDOWN_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "span": {"style"},
}
#: The only style properties kept, and only on the elements above: table column alignment
#: (JupyterLab right-aligns HTML table cells, which an ``align`` attribute cannot override)
#: and code colours (``_highlight``). None of them can load anything.
_STYLE_PROPERTIES = frozenset({"text-align", "color", "font-weight"})
#: Math delimiters as the math plugins report them (token.markup) → the closing one.
_MATH_CLOSE = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}


def escape(text: str) -> str:
    """``text`` as HTML text (quotes included, so it is safe in attribute values too)."""
    return html.escape(text, quote=True)


def clean_html(fragment: str) -> str:
    """An HTML fragment from a model, sanitized: Ammonia's default tags and attributes
    (structure, text formatting, tables, links, images), minus everything that can run
    script or load a URL other than http/https/mailto."""
    return _html_cleaner().clean(fragment)


def markdown_html(text: str) -> str:
    """Markdown from a model as safe HTML (raw HTML in it shown as text)."""
    return _clean_markdown(_markdown().render(text))


def answer_html(text: str, *, reasoning: str = "", note: str | None = None) -> str:
    """An answer rendered from Markdown, its reasoning folded above it, its note
    (``interrupted``, ``error: …``) in bold below it."""
    parts = []
    if reasoning:
        parts.append(f"<details><summary>reasoning</summary>{markdown_html(reasoning)}</details>")
    parts.append(markdown_html(text))
    if note:
        parts.append(note_html(note))
    return "".join(parts)


def note_html(note: str) -> str:
    return f"<p><strong>[{escape(note)}]</strong></p>"


def _clean_markdown(rendered: str) -> str:
    return _markdown_cleaner().clean(rendered)


@cache
def _html_cleaner() -> nh3.Cleaner:
    import nh3

    return nh3.Cleaner(
        tags=set(nh3.ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel=LINK_REL,
        strip_comments=True,
    )


@cache
def _markdown_cleaner() -> nh3.Cleaner:
    import nh3

    return nh3.Cleaner(
        tags=set(_MARKDOWN_TAGS),
        attributes={tag: set(attrs) for tag, attrs in _MARKDOWN_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        url_relative="deny",
        link_rel=LINK_REL,
        strip_comments=True,
        filter_style_properties=set(_STYLE_PROPERTIES),
    )


def code_html(code: str, language: str = "") -> str:
    """A code block: highlighted when ``language`` is known, escaped either way."""
    from ._highlight import highlight

    body = highlight(code, language) if language else None
    return f"<pre><code>{escape(code) if body is None else body}</code></pre>"


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.texmath import texmath_plugin

    md = MarkdownIt("commonmark", {"html": False, "highlight": _highlight})
    md.enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_labels=False, double_inline=True)
    md.use(texmath_plugin, delimiters="brackets")
    for kind in ("math_inline", "math_inline_double"):
        md.add_render_rule(kind, _render_inline_math)
    md.add_render_rule("math_block", _render_block_math)
    md.core.ruler.push("table_align", _table_align)
    return md


def _render_inline_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    return escape(f"{token.markup}{token.content}{_MATH_CLOSE[token.markup]}")


def _render_block_math(self: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
    token = tokens[idx]
    tex = "\n".join((token.markup, token.content.strip("\n"), _MATH_CLOSE[token.markup]))
    return f"<div>{escape(tex)}</div>\n"


def _highlight(code: str, language: str, attrs: Any) -> str:
    from ._highlight import highlight

    # "" lets markdown-it escape the block itself.
    return highlight(code, language.split(maxsplit=1)[0]) or "" if language.strip() else ""


def _table_align(state: StateCore) -> None:
    """Columns without an alignment are left-aligned, as in Markdown that JupyterLab renders
    itself (its stylesheet right-aligns HTML table cells, for DataFrames)."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open") and "style" not in token.attrs:
            token.attrSet("style", "text-align:left")
