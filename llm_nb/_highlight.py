"""Code blocks in answers, coloured as the notebook colours code.

JupyterLab highlights the code blocks of the Markdown it renders itself; answers are rendered
in Python instead (see ``_safe_html``), so their code blocks are highlighted here: Pygments
splits the code into tokens, and each token gets the colour JupyterLab's own editor theme
gives it, as a CSS variable (``--jp-mirror-editor-keyword-color``...). The colours therefore
follow the user's theme, light or dark, and a frontend without those variables shows plain
text. The output is escaped text in ``<span style="color:…">`` only; the sanitizer keeps no
other style property.
"""

from __future__ import annotations

from functools import cache
from html import escape
from typing import Any

#: Pygments token type (by name, most specific first) → JupyterLab editor colour variable.
_COLOURS = (
    ("Comment", "comment"),
    ("Literal.String", "string"),
    ("Literal.Number", "number"),
    ("Keyword", "keyword"),
    ("Operator.Word", "keyword"),
    ("Name.Builtin", "builtin"),
    ("Name.Function", "def"),
    ("Name.Class", "def"),
    ("Name.Decorator", "meta"),
    ("Name.Tag", "tag"),
    ("Name.Attribute", "attribute"),
    ("Name.Variable", "variable-2"),
    ("Operator", "operator"),
    ("Punctuation", "punctuation"),
    ("Generic.Heading", "header"),
    ("Error", "error"),
)
#: JupyterLab draws keywords bold.
_BOLD = frozenset({"keyword"})


def highlight(code: str, language: str) -> str | None:
    """``code`` as escaped HTML with coloured spans, or None when ``language`` is not one
    Pygments knows (the caller then shows it plain)."""
    lexer = _lexer(language.strip().lower())
    if lexer is None:
        return None
    runs: list[tuple[str | None, str]] = []  # (colour, text), neighbours of one colour merged
    for token, value in lexer.get_tokens(code):
        colour = _colour(token)
        if runs and runs[-1][0] == colour:
            runs[-1] = (colour, runs[-1][1] + value)
        else:
            runs.append((colour, value))
    parts = []
    for colour, value in runs:
        text = escape(value, quote=False)
        if colour is None:
            parts.append(text)
        else:
            bold = ";font-weight:bold" if colour in _BOLD else ""
            style = f"color:var(--jp-mirror-editor-{colour}-color){bold}"
            parts.append(f'<span style="{style}">{text}</span>')
    html = "".join(parts)
    # Pygments ends the last line with a newline the code may not have had.
    return html[:-1] if html.endswith("\n") and not code.endswith("\n") else html


@cache
def _lexer(language: str) -> Any:
    if not language:
        return None
    from pygments.lexers import get_lexer_by_name  # type: ignore[import-untyped]
    from pygments.util import ClassNotFound  # type: ignore[import-untyped]

    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False)
    except ClassNotFound:
        return None


@cache
def _colour(token: Any) -> str | None:
    from pygments.token import string_to_tokentype  # type: ignore[import-untyped]

    for name, colour in _COLOURS:
        if token in string_to_tokentype(name):
            return colour
    return None
