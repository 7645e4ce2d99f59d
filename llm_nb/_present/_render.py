"""Answers as MIME bundles: one answer in the chosen format, or several side by side.

Answers are untrusted: a live output is trusted by JupyterLab, so nothing from a model
reaches the page as markup. Markdown answers are rendered to HTML here and sanitized
(``llm_nb._safe_html``), so the bundle is ``text/html``, never ``text/markdown``; ``-f html``
answers are sanitized; every other text is escaped.

Every bundle carries ``text/plain`` next to its rich type, so frontends that cannot render
HTML (a terminal, ``nbconvert --to script``, a diff tool reading the .ipynb) still show the
answer, and the saved notebook holds the text itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._safe_html import answer_html, clean_html, code_html, escape, markdown_html, note_html
from ._figures import waiting_text

Bundle = dict[str, Any]

#: A fenced block: opening fence (``` or ~~~, 3 or more) with its info string, then the body
#: up to a matching closing fence or, while the answer is still streaming, the end.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})([^\n]*)\n(.*?)(?:^ {0,3}\1[ \t]*$|\Z)", re.M | re.S)


def waiting_bundle(waited_s: float = 0.0) -> Bundle:
    """What a cell's output shows between sending and the first token."""
    return {"text/plain": waiting_text(waited_s)}


def answer_bundle(text: str, fmt: str, *, reasoning: str = "", note: str | None = None) -> Bundle:
    """One answer rendered as ``fmt`` (markdown · text · code · json · html); ``note`` (e.g.
    ``interrupted``) is appended as a visible ``[note]`` marker."""
    plain = text + (f"\n[{note}]" if note else "")
    marker = note_html(note) if note else ""
    if fmt == "markdown":
        return {"text/html": answer_html(text, reasoning=reasoning, note=note), "text/plain": plain}
    if fmt == "code":
        lang, code = extract_code(text)
        return {
            "text/html": code_html(code, lang) + marker,
            "text/plain": code + (f"\n[{note}]" if note else ""),
        }
    if fmt == "json":
        value = parse_json_answer(text)
        if note is None and isinstance(value, dict | list):
            return {"application/json": value, "text/plain": json.dumps(value, indent=2)}
        return {"text/plain": plain}
    if fmt == "html":
        return {"text/html": clean_html(text) + marker, "text/plain": plain}
    return {"text/plain": plain}


def extract_code(text: str) -> tuple[str, str]:
    """(language, code) of the fenced blocks in an answer, joined; the whole answer when it
    has no fence. An unclosed fence (still streaming) counts up to the end."""
    blocks = _FENCE.findall(text)
    if not blocks:
        return "", text.strip("\n")
    lang = blocks[0][1].strip().split(" ")[0]
    return lang, "\n\n".join(body.rstrip("\n") for _, _, body in blocks)


def parse_json_answer(text: str) -> Any:
    """The JSON value of an answer (inside a fenced block or bare), or None if it is not JSON."""
    _, candidate = extract_code(text)
    try:
        return json.loads(candidate)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Column:
    """One model's answer in a side-by-side view."""

    label: str
    text: str
    footer: str
    note: str | None = None
    failed: bool = False


# Columns of equal height (the row stretches them), each a column of its own whose footer
# is pushed to the bottom, so footers line up whatever the answers' lengths.
_BOX = (
    "flex:1 1 0;min-width:12em;padding:0.4em 0.6em;display:flex;flex-direction:column;"
    "border:1px solid var(--jp-border-color2,#ddd);border-radius:4px"
)
_MUTED = "color:var(--jp-ui-font-color2,#777);font-size:0.85em"
# A model id has no spaces: let it break anywhere rather than run into the next column.
_TITLE = "font-weight:bold;margin-bottom:0.3em;overflow-wrap:anywhere"


def columns_bundle(columns: Sequence[Column], fmt: str) -> Bundle:
    """Several answers side by side (an HTML flex row), each with its footer of figures."""
    cells = []
    for col in columns:
        note = ""
        if col.note:
            color = "var(--jp-error-color1,#c00)" if col.failed else "inherit"
            note = f'<div style="color:{color};font-weight:bold">[{escape(col.note)}]</div>'
        cells.append(
            f'<div class="llm-nb-column" style="{_BOX}">'
            f'<div style="{_TITLE}">{escape(col.label)}</div>'
            f"{_column_body(col.text, fmt)}{note}"
            f'<div style="{_MUTED};margin-top:auto;padding-top:0.4em">'
            f"{escape(col.footer)}</div></div>"
        )
    row = (
        '<div class="llm-nb-columns" style="display:flex;gap:0.6em;align-items:stretch">'
        f"{''.join(cells)}</div>"
    )
    return {"text/html": row, "text/plain": columns_text(columns)}


def with_footer(bundle: Bundle, footer: str) -> Bundle:
    """``bundle`` with ``footer`` (an answer's figures) as a muted line under its HTML; a
    bundle without HTML (``-f text``, ``-f json``) is left as it is."""
    if not footer or "text/html" not in bundle:
        return bundle
    line = f'<div class="llm-nb-footer" style="{_MUTED};margin-top:0.4em">{escape(footer)}</div>'
    return {**bundle, "text/html": bundle["text/html"] + line}


def _column_body(text: str, fmt: str) -> str:
    """One column's answer: rendered Markdown, sanitized HTML, or escaped text."""
    if fmt == "markdown":
        return f"<div>{markdown_html(text)}</div>"
    if fmt == "html":
        return f"<div>{clean_html(text)}</div>"
    return f'<div style="white-space:pre-wrap;word-wrap:break-word">{escape(text)}</div>'


def columns_text(columns: Sequence[Column]) -> str:
    """The side-by-side view as plain text: one section per model."""
    return "\n\n".join(_section(col) for col in columns)


def _section(col: Column) -> str:
    note = f"\n[{col.note}]" if col.note else ""
    return f"── {col.label} ──\n{col.text}{note}\n({col.footer})"
