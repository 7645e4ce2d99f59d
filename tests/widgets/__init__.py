"""Tests of llm_nb/_widgets, a file per module: the chat panel (test_chat.py), the compare
panel (test_compare.py), the prompt box (test_prompt.py), the model picker (test_picker.py),
and every CSS class documented (test_css_classes.py). The same panels in a real browser are in
tests/browser/."""
