"""What a saved notebook keeps of a panel: its finished answers, as a normal output, shown
only where the live panel is not.

Widget state is not saved with a notebook by default (JupyterLab's "Save Widget State" is
off, nbconvert and nbclient never have it), and an ``ipywidgets.Output`` widget's content is
widget state too. A reopened notebook shows a panel's place as "Error displaying widget" or
its text/plain repr, and nothing of the answers.

So when a panel is displayed, it puts a second, ordinary output under itself: a
``display_data`` with a display id, empty at first, published from the cell that displays
the panel (so the frontend files it under that cell). When an answer finishes, the panel
sends ``update_display_data`` for that display id with the answers so far as sanitized HTML
(see ``llm_nb._safe_html``) plus text/plain. Frontends route display-id updates to every
output holding that id, whichever request the update came from (JupyterLab keeps a cell's
request open for exactly this, and nbclient does the same), so the cell's saved output
holds the final answers. Nothing is sent while an answer streams.

While the panel itself is on the page, that copy would show every answer a second time. The
panel therefore carries a style rule (:meth:`SavedOutput.hiding_rule`) that hides the output
of its own saved copy, found by a class named after the display id. The rule lives in the
live widget's view, so it applies exactly while the panel is drawn: in a reopened notebook
without the panel's widget state (or in an HTML export, or any viewer that drops styles)
the copy shows, rendered, and it is the only copy there.

Outside a kernel (a terminal IPython, a script) there is no live output to update, so no
saved output is made; :attr:`SavedOutput.bundle` still holds what it would show.
"""

from __future__ import annotations

import uuid
from typing import Any

from .._present._display import has_rich_display, ipython_display
from .._present._render import Bundle

#: Every saved copy's class (the copy's own class adds its display id).
SAVED_CLASS = "llm-nb-saved"


class SavedOutput:
    """One display id under a panel, updated with each finished answer."""

    def __init__(self) -> None:
        self.key = uuid.uuid4().hex
        self.display_id = f"llm_nb-{self.key}"
        #: What the output shows (or would show, outside a kernel).
        self.bundle: Bundle = self._wrap("", "")
        self._shown = False

    @property
    def css_class(self) -> str:
        return f"{SAVED_CLASS}-{self.key}"

    def hiding_rule(self) -> str:
        """CSS hiding this copy (its whole output row, where the browser supports
        ``:has``: JupyterLab's and Notebook 7's output areas) while the panel is drawn."""
        own = f".{self.css_class}"
        return f".jp-OutputArea-child:has({own}),{own}{{display:none!important}}"

    def show(self) -> None:
        """Publish the output from the current cell (a no-op outside a kernel)."""
        if not has_rich_display(_shell()):
            return
        ipython_display()(self.bundle, raw=True, display_id=self.display_id)
        self._shown = True

    def update(self, html: str, plain: str) -> None:
        """Show ``html`` (already safe) and ``plain`` as the saved copy."""
        self.bundle = self._wrap(html, plain)
        if self._shown:
            ipython_display()(self.bundle, raw=True, display_id=self.display_id, update=True)

    def _wrap(self, html: str, plain: str) -> Bundle:
        return {
            "text/html": f'<div class="{SAVED_CLASS} {self.css_class}">{html}</div>',
            "text/plain": plain,
        }


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()
