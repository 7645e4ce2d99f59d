"""The panels' prompt box: a textarea where Shift+Enter sends and Escape stops.

ipywidgets' ``Textarea`` reports only its value, never which key was pressed, so the keyboard
needs a widget with its own frontend code: a small ``anywidget`` (the ``keys`` extra). Without
anywidget installed the box is a plain ``Textarea`` and the panels' buttons do the same work.
Both have a ``value`` trait, CSS classes and a layout, which is all the panels use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: The frontend: a textarea synced to ``value``; Shift+Enter sends {"event": "submit"} (after
#: the value, so the kernel sees what was typed), Escape sends {"event": "stop"}, and a
#: {"event": "focus"} message from the kernel puts the caret back in the box.
#: The two keys are taken on the window, on the event's way down (capture phase): Notebook 7
#: reads shortcuts on the document on the way down, before a listener on the box would run,
#: and would also run the cell and move on (Shift+Enter) or leave edit mode (Escape).
#: Every other key (Ctrl+S, say) reaches the notebook as usual.
_ESM = """
function render({ model, el }) {
  const box = document.createElement("textarea");
  box.className = "widget-textarea";
  box.placeholder = model.get("placeholder");
  box.rows = 3;
  box.style.width = "100%";
  box.style.boxSizing = "border-box";
  box.style.resize = "vertical";
  box.style.font = "inherit";
  box.value = model.get("value");
  const push = () => {
    if (model.get("value") !== box.value) {
      model.set("value", box.value);
      model.save_changes();
    }
  };
  box.addEventListener("input", push);
  const keys = (event) => {
    if (event.target !== box || event.isComposing) return;
    const submit = event.key === "Enter" && event.shiftKey;
    if (!submit && event.key !== "Escape") return;
    event.preventDefault();
    event.stopPropagation();
    if (submit) {
      push();
      model.send({ event: "submit" });
    } else {
      model.send({ event: "stop" });
    }
  };
  window.addEventListener("keydown", keys, true);
  const pull = () => {
    if (box.value !== model.get("value")) box.value = model.get("value");
  };
  model.on("change:value", pull);
  model.on("change:placeholder", () => { box.placeholder = model.get("placeholder"); });
  model.on("msg:custom", (msg) => {
    if (msg && msg.event === "focus") box.focus();
  });
  el.appendChild(box);
  return () => {
    model.off("change:value", pull);
    window.removeEventListener("keydown", keys, true);
  };
}
export default { render };
"""


def keyboard_available() -> bool:
    """Whether the keyboard-aware prompt box can be used (anywidget installed, ipywidgets 8)."""
    return _prompt_class() is not None


def prompt_box(
    placeholder: str,
    *,
    on_submit: Callable[[], None],
    on_stop: Callable[[], None],
    layout: Any = None,
) -> Any:
    """A prompt box calling ``on_submit`` on Shift+Enter and ``on_stop`` on Escape."""
    cls = _prompt_class()
    if cls is None:
        import ipywidgets as w  # type: ignore[import-untyped]

        return w.Textarea(placeholder=placeholder, layout=layout)
    box = cls(placeholder=placeholder)
    if layout is not None:
        box.layout = layout
    box.handlers = {"submit": on_submit, "stop": on_stop}
    return box


def focus(box: Any) -> None:
    """Put the caret back in ``box`` (a no-op for the plain ``Textarea``)."""
    if getattr(box, "handlers", None) is not None:
        box.send({"event": "focus"})


@functools.cache
def _prompt_class() -> type[Any] | None:
    # Built on first use, not at import: anywidget is optional and imports ipywidgets.
    import ipywidgets

    # ipywidgets 7 (Colab's pin) with anywidget raises traitlets deprecations on every
    # widget; there the plain box and the buttons are used.
    if int(ipywidgets.__version__.split(".")[0]) < 8:
        return None
    try:
        import anywidget
    except ImportError:
        return None
    import traitlets

    class PromptBox(anywidget.AnyWidget):
        _esm = _ESM
        value = traitlets.Unicode("").tag(sync=True)
        placeholder = traitlets.Unicode("").tag(sync=True)

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.handlers: dict[str, Callable[[], None]] = {}
            self.on_msg(self._message)

        def _message(self, _widget: Any, content: Any, _buffers: Any) -> None:
            event = content.get("event") if isinstance(content, dict) else None
            handler = self.handlers.get(event) if isinstance(event, str) else None
            if handler is not None:
                handler()

    return PromptBox
