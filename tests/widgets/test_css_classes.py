"""The panels' CSS classes: every one used in llm_nb/_widgets is documented in the package's
docstring."""

from __future__ import annotations

import re
from pathlib import Path

import llm_nb


def test_every_css_class_is_documented() -> None:

    from llm_nb import _widgets as widgets

    doc = widgets.__doc__ or ""
    package = Path(widgets.__file__).parent
    used = {
        name
        for source in package.glob("*.py")
        for name in re.findall(r'"(llm-nb-[a-z-]+)"', source.read_text())
    }
    assert len(used) > 40
    for name in sorted(used):
        prefixes = [f"llm-nb-{p}-" for p in ("picker", "chat", "compare")]
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        short = f"``-{name.removeprefix(prefix)}``" if prefix else f"``{name}``"
        assert f"``{name}``" in doc or short in doc, name
    assert {"chat_panel", "compare_panel", "model_picker"} <= set(llm_nb.__all__)
