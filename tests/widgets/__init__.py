"""Tests of llm_nb/_widgets: the chat and compare panels (test_panels.py: streaming, Stop,
keys, saved copies, named conversations) and the model picker (test_picker.py). The same
panels in a real browser are in tests/browser/."""
