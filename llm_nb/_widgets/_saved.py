"""What a saved notebook keeps of a panel: its finished answers, as a normal output.

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
holds the final answers. Nothing is sent while an answer streams: the live view is the
widget, and the saved output changes once per finished answer.

Outside a kernel (a terminal IPython, a script) there is no live output to update, so no
saved output is made; :attr:`SavedOutput.bundle` still holds what it would show.
"""

from __future__ import annotations

import uuid
from typing import Any

from .._present._display import has_rich_display, ipython_display
from .._present._render import Bundle

_EMPTY: Bundle = {"text/plain": ""}


class SavedOutput:
    """One display id under a panel, updated with each finished answer."""

    def __init__(self) -> None:
        self.display_id = f"llm_nb-{uuid.uuid4().hex}"
        #: What the output shows (or would show, outside a kernel).
        self.bundle: Bundle = _EMPTY
        self._shown = False

    def show(self) -> None:
        """Publish the output from the current cell (a no-op outside a kernel)."""
        if not has_rich_display(_shell()):
            return
        ipython_display()(self.bundle, raw=True, display_id=self.display_id)
        self._shown = True

    def update(self, bundle: Bundle) -> None:
        self.bundle = bundle
        if self._shown:
            ipython_display()(bundle, raw=True, display_id=self.display_id, update=True)


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()
