"""What differs between the IPython and ipywidgets releases llm_nb supports, in one place.

The declared ranges start at Google Colab's pinned stack (IPython 7.34, ipywidgets 7.7);
each helper here uses the newer package's API when present and falls back to what the older
one offers, through public names only.
"""

from __future__ import annotations

from typing import Any

#: The MIME type a frontend renders a widget view from (ipywidgets 7 and 8 alike).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def widget_bundle(widget: Any) -> dict[str, Any]:
    """The display bundle of an ipywidgets widget: ipywidgets 8's ``_repr_mimebundle_`` (the
    IPython display protocol), else the bundle ipywidgets 7 displays, built from the public
    ``model_id`` (7 has no ``_repr_mimebundle_``: it displays itself in ``_ipython_display_``)."""
    mimebundle = getattr(widget, "_repr_mimebundle_", None)
    if mimebundle is not None:
        bundle: dict[str, Any] = mimebundle()
        return bundle
    view = {"version_major": 2, "version_minor": 0, "model_id": widget.model_id}
    return {"text/plain": repr(widget), WIDGET_VIEW: view}
