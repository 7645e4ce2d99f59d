"""Tests of llm_nb/_magics: the magics in an in-process IPython shell (test_magics.py) and in
a real kernel, as a notebook frontend sees them (test_kernel.py)."""
