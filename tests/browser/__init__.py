"""Browser tests: JupyterLab in headless Chromium, driven by Playwright (tests/test_browser.py).

``lab`` starts a throwaway JupyterLab server; ``page`` launches Debian's Chromium and knows
JupyterLab's DOM (cells, outputs, the execution prompt). ``quickstart_ui.ipynb`` is the
notebook the test runs; it names its llama-server ``127.0.0.1:8080``, which the test rewrites.
"""
