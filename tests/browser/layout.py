"""Layout facts a browser test checks on llm_nb's outputs, the same in JupyterLab and
Notebook 7 (both lay cells out as ``.jp-Cell`` with ``.jp-OutputArea``): nothing wider than
the cell, each answer shown once, side-by-side columns of one height with their footers on
one line, and keys pressed in a panel's prompt staying in the panel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.browser.page import Notebook

#: Every element under a cell's outputs, measured against the output area: how far any
#: sticks out past its right edge (0 when everything fits), and what sticks out. Only
#: llm_nb's own scroll box (``llm-nb-scroll``, around a wide table) may clip what it holds;
#: JupyterLab's output areas scroll too, but content needing that scroll does not fit.
_OVERFLOW_JS = """cell => {
    const area = cell.querySelector('.jp-OutputArea');
    const right = area.getBoundingClientRect().right;
    let worst = 0, what = '';
    for (const el of area.querySelectorAll('*')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0) continue;
        const box = el.parentElement && el.parentElement.closest('.llm-nb-scroll');
        const edge = box ? Math.min(r.right, box.getBoundingClientRect().right) : r.right;
        if (edge - right > worst) { worst = edge - right; what = el.className; }
    }
    return {overflow: worst, what: String(what)};
}"""

#: The side-by-side columns under a cell, as laid out: each column's box and its footer's
#: box, and how many lines its answer has. ``%%llm a b`` draws ``.llm-nb-columns >
#: .llm-nb-column`` (the footer is the column's last child); the compare panel draws
#: ``.llm-nb-compare-col`` with an ``.llm-nb-compare-figures`` footer.
_COLUMNS_JS = """(cell, kind) => {
    const sel = kind === 'compare'
        ? {col: '.llm-nb-compare-columns > .llm-nb-compare-col',
           answer: '.llm-nb-compare-answer', footer: '.llm-nb-compare-figures',
           title: '.llm-nb-compare-title'}
        : {col: '.jp-OutputArea-output .llm-nb-columns > .llm-nb-column'};
    return [...cell.querySelectorAll(sel.col)].map(col => {
        const footer = sel.footer ? col.querySelector(sel.footer) : col.lastElementChild;
        const title = sel.title ? col.querySelector(sel.title) : col.firstElementChild;
        const range = document.createRange();  // the text's own extent, overflow included
        range.selectNodeContents(title);
        const words = range.getBoundingClientRect();
        const answer = sel.answer ? col.querySelector(sel.answer) : col.children[1];
        const box = col.getBoundingClientRect(), foot = footer.getBoundingClientRect();
        return {
            top: box.top, height: box.height, bottom: box.bottom,
            left: box.left, right: box.right, title: title.innerText,
            titleLeft: words.left, titleRight: words.right,
            footerTop: foot.top, footerBottom: foot.bottom,
            footer: footer.innerText, lines: answer.innerText.split('\\n').filter(
                l => l.trim()).length,
        };
    });
}"""

#: What pressing a key in a panel must leave alone: which cell is active, the notebook's
#: mode, every cell's prompt (a run changes its count) and the number of cells (running the
#: last cell adds one).
_NOTEBOOK_STATE_JS = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
    return {
        active: cells.findIndex(c => c.classList.contains('jp-mod-active')),
        prompts: cells.map(c => c.querySelector('.jp-InputArea-prompt').textContent.trim()),
        cells: cells.length,
    };
}"""

#: Most pixels two heights or edges that should match may differ by (sub-pixel rounding).
SLACK_PX = 2


def fits(nb: Notebook, index: int) -> None:
    """Nothing in cell ``index``'s outputs is wider than the cell."""
    measured = nb.cell(index).evaluate(_OVERFLOW_JS)
    assert measured["overflow"] <= 1, f"cell {index}: wider than the cell: {measured}"


def times_shown(nb: Notebook, index: int, text: str) -> int:
    """How often ``text`` appears in what the cell's outputs show (hidden parts excluded)."""
    shown: str = nb.cell(index).locator(".jp-OutputArea").inner_text()
    return " ".join(shown.split()).count(" ".join(text.split()))


def first_words(text: str, n: int = 6) -> str:
    return " ".join(text.split()[:n])


def columns(nb: Notebook, index: int, kind: str) -> list[dict[str, Any]]:
    """The side-by-side columns of cell ``index``: ``kind`` "llm" (a ``%%llm a b`` cell) or
    "compare" (a compare panel)."""
    found: list[dict[str, Any]] = nb.cell(index).evaluate(_COLUMNS_JS, kind)
    return found


def assert_columns_fit(nb: Notebook, index: int, kind: str) -> None:
    """Each column's title (a long model id) stays inside its column: none runs into the next."""
    for c in columns(nb, index, kind):
        inside = c["left"] - SLACK_PX <= c["titleLeft"] and c["titleRight"] <= c["right"] + SLACK_PX
        assert inside, f"cell {index}: a title runs out of its column: {c}"


def assert_even_columns(nb: Notebook, index: int, kind: str, min_ratio: float = 5) -> None:
    """Cell ``index``'s columns answer at very different lengths (the longest at least
    ``min_ratio`` times the shortest, in lines), yet their boxes have one top and one height,
    and every footer's top edge is on one line, under all of its answer."""
    cols = columns(nb, index, kind)
    assert len(cols) >= 2, f"cell {index}: {len(cols)} column(s)"
    lines = [c["lines"] for c in cols]
    assert max(lines) >= min_ratio * min(lines) >= min_ratio, f"answers alike: {lines}"
    for name in ("top", "height", "footerTop", "footerBottom"):
        values = [c[name] for c in cols]
        assert max(values) - min(values) <= SLACK_PX, f"cell {index}: {name} differ: {cols}"
    for c in cols:
        assert c["footer"].strip() and c["footerBottom"] <= c["bottom"] + SLACK_PX, c
    assert_columns_fit(nb, index, kind)


def notebook_state(nb: Notebook) -> dict[str, Any]:
    state: dict[str, Any] = nb.page.evaluate(_NOTEBOOK_STATE_JS)
    return state


@contextmanager
def keys_stay_in_the_panel(nb: Notebook) -> Iterator[None]:
    """Keys pressed inside the block (Shift+Enter, Escape in a panel's prompt) run no cell,
    move to no other cell and add none: the panel takes them, the notebook does not."""
    before = notebook_state(nb)
    yield
    nb.page.wait_for_timeout(500)  # a run or a move would show within a frame or two
    after = notebook_state(nb)
    assert after == before, f"the notebook took the key: {before} -> {after}"
