"""Browser tests: JupyterLab and Notebook 7 in headless Chromium, driven by Playwright
(tests/browser/test_*.py).

``lab`` starts a throwaway JupyterLab server; ``page`` launches Debian's Chromium and knows
JupyterLab's DOM (cells, outputs, the execution prompt); ``layout`` measures what both UIs
show (nothing wider than the cell, each answer once, side-by-side columns of one height with
their footers on one line, keys that stay in a panel). ``lengths`` and ``hostile`` are fake
model servers (answers of very different lengths; script payloads). ``quickstart_ui.ipynb``
is the notebook the quick-start test runs; it names its llama-server ``127.0.0.1:8080``,
which the test rewrites.
"""
