"""Debian's Chromium driven by Playwright, and a notebook open in JupyterLab as a user sees it.

Playwright's own browser download cannot work here (no network to its CDN), so the browser is
the system Chromium (``apt-get install chromium``) at ``/usr/bin/chromium``. Without the
background-networking flags Chromium keeps trying to reach Google's hosts.

Only JupyterLab's stable DOM is used: ``.jp-Cell`` (in document order, every cell kept in the
DOM because the test's settings turn windowing off), ``.jp-InputArea-prompt`` (``[ ]:``,
``[*]:`` while queued or running, ``[3]:`` when done), ``.jp-OutputArea-output``, the
toolbar's ``.jp-Notebook-ExecutionIndicator[data-status]`` (idle/busy), the status bar's
"Python 3 (ipykernel) | Idle" item and the menu bar (``.lm-MenuBar-item``, ``.lm-Menu``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.lab import JupyterLab

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page, Playwright

#: The system Chromium (Debian package ``chromium``); CHROMIUM overrides it.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
INSTALL_HINT = "apt-get install -y --no-install-recommends chromium (bash .ci/run does this)"

#: What the environment's notes say Chromium needs on these machines (Playwright adds
#: --headless itself; the profile is a fresh temporary --user-data-dir).
LAUNCH_ARGS = [
    "--no-sandbox",  # runs as root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DONE_PROMPT = re.compile(r"^\s*\[\d+\]:\s*$")
#: What a cell shows before the first token arrives.
WAITING = "waiting for the first token…"
#: Most seconds one model cell may take: a second or two on an idle 2-core machine, but a
#: machine loaded by other work has been seen 50 times slower.
LLM_CELL_S = 180


def ensure_browser(report: Callable[[str], None]) -> None:
    """Install Debian's chromium before the tests start when it is missing and this user may
    (root, or sudo without a password), as the llama-server build is prepared: the README's
    test command must work on a fresh machine. Otherwise leave it to :func:`require_browser`
    to fail the browser tests with the hint."""
    if CHROMIUM.is_file() or str(CHROMIUM) != "/usr/bin/chromium" or not shutil.which("apt-get"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and not shutil.which("sudo"):
        return
    report("llm_nb tests: installing Debian's chromium for the browser tests (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    for step in ([*sudo, "apt-get", "update", "-q"], install):
        done = subprocess.run(
            step, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
            report(f"llm_nb tests: {' '.join(step)} failed ({done.returncode}): {tail[0]}")
            return


def require_browser() -> None:
    """Fail (not skip) with one line saying what to install when the browser is missing."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        where = f" (there is one at {found}: set CHROMIUM={found})" if found else ""
        pytest.fail(
            f"Chromium not found at {CHROMIUM}{where}; install it: {INSTALL_HINT}", pytrace=False
        )
    try:
        import jupyterlab  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        hint = "install the test extra: pip install -e '.[test]'"
        pytest.fail(f"{exc.name} is missing; {hint}", pytrace=False)


def kernel_env(local_url: str | None, **more: str | None) -> dict[str, str | None]:
    """The environment a browser test's server (and so its kernels) runs with: this
    checkout's llm_nb importable, ``local`` at ``local_url``, no provider configured from the
    caller's environment (a None value removes a variable), then ``more``."""
    repo = str(Path(__file__).resolve().parents[2])
    env: dict[str, str | None] = {
        # The kernel imports the llm_nb under test (this checkout), installed or not.
        "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])),
        "LLM_NB_LOCAL_URL": local_url,
        "LLAMA_CPP_URL": None,
        "LLAMA_SERVER_URL": None,
        "OPENAI_API_KEY": None,
        "OPENAI_BASE_URL": None,
        "OLLAMA_HOST": None,
    }
    return env | more


def launch(playwright: Playwright, profile: Path) -> BrowserContext:
    return playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=str(CHROMIUM),
        headless=True,
        args=LAUNCH_ARGS,
        viewport={"width": 1400, "height": 1000},
    )


# One snapshot of a cell, taken in one go inside the page so that status, prompt and text
# belong to the same moment.
_SNAPSHOT_JS = """
([index, selector]) => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    const cell = panel.querySelectorAll('.jp-Notebook .jp-Cell')[index];
    const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
    const out = cell.querySelector(selector);
    return {
        kernel: indicator ? indicator.getAttribute('data-status') : null,
        prompt: cell.querySelector('.jp-InputArea-prompt').textContent,
        text: out ? out.innerText : '',
    };
}
"""


class Notebook:
    """A notebook open in JupyterLab: run cells, read their outputs, take screenshots."""

    def __init__(self, page: Page, path: Path, shots: Path, prefix: str) -> None:
        self.page = page
        self.path = path
        self.shots = shots
        self.prefix = prefix
        #: The notebook's cells as stored (to find a cell by its source).
        self.cells: list[dict[str, Any]] = json.loads(path.read_text())["cells"]
        #: One line per screenshot: seconds since this object was made, and its name.
        self.steps: list[str] = []
        #: What the page logged: "type: text" (console messages and uncaught errors).
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self._t0 = time.monotonic()

    def open(self, url: str, timeout_ms: float = 120_000) -> None:
        """Load JupyterLab at ``url`` and wait until the kernel has started and is idle."""
        from playwright.sync_api import expect

        self.page.goto(url, timeout=timeout_ms)
        self.page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
        # The status bar's kernel item goes "No Kernel | Initializing", "Python 3 (ipykernel) |
        # Initializing", "| Connecting", "| Unknown", "| Idle". The toolbar indicator already
        # says idle at "No Kernel", and a cell run then asks "Select Kernel", so wait for this.
        kernel = self.page.locator(".jp-StatusBar-TextItem", has_text=" | ")
        expect(kernel).to_have_text(re.compile(r"^(?!No Kernel).+ \| Idle$"), timeout=timeout_ms)
        # Every cell of the file is on the page.
        expect(self.page.locator(".jp-Notebook .jp-Cell")).to_have_count(len(self.cells))

    def index(self, part: str) -> int:
        """The index of the one cell whose source contains ``part``."""
        found = [i for i, c in enumerate(self.cells) if part in "".join(c["source"])]
        assert len(found) == 1, f"{len(found)} cells contain {part!r}"
        return found[0]

    def cell(self, index: int) -> Locator:
        return self.page.locator(".jp-Notebook .jp-Cell").nth(index)

    def prompt(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-InputArea-prompt")

    def outputs(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-OutputArea-output")

    def run(self, index: int) -> None:
        """Run the cell as a user does: click into it, press Shift+Enter."""
        from playwright.sync_api import expect

        cell = self.cell(index)
        cell.scroll_into_view_if_needed()
        cell.locator(".jp-InputArea-editor").click()
        expect(cell).to_have_class(re.compile(r"\bjp-mod-active\b"))
        self.page.keyboard.press("Shift+Enter")

    def wait_done(self, index: int, timeout_ms: float = 60_000) -> None:
        """Until the cell's prompt shows its execution count; fails on an error output."""
        from playwright.sync_api import expect

        expect(self.prompt(index)).to_have_text(DONE_PROMPT, timeout=timeout_ms)
        errors = self.cell(index).locator(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
        )
        if errors.count():
            raise AssertionError(f"cell {index} wrote to stderr:\n{errors.all_inner_texts()}")

    def run_done(self, index: int, timeout_ms: float = 60_000) -> None:
        self.run(index)
        self.wait_done(index, timeout_ms)

    def run_all_answered(self) -> list[int]:
        """Run All; wait for every code cell, and check that each ``%%llm`` cell shows an
        answer, not the waiting marker. The ``%%llm`` cells' indices."""
        self.menu("Run", "Run All Cells")
        code = [i for i, c in enumerate(self.cells) if c["cell_type"] == "code"]
        for i in code:
            self.wait_done(i, LLM_CELL_S * 1000)
        llm_cells = [i for i in code if "".join(self.cells[i]["source"]).startswith("%%llm")]
        assert llm_cells, "the notebook has no %%llm cell"
        for i in llm_cells:
            text = self.outputs(i).first.inner_text().strip()
            assert text and not text.startswith(WAITING), f"cell {i}: no answer shown"
        return llm_cells

    def menu(self, name: str, item: str) -> None:
        """Choose ``item`` in the menu bar's menu ``name`` (e.g. Run > Run All Cells)."""
        exact = re.compile(rf"^{re.escape(name)}$")
        self.page.locator(".lm-MenuBar-item", has_text=exact).click()
        entry = re.compile(rf"^{re.escape(item)}$")
        self.page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=entry).click()

    def snapshot(self, index: int, selector: str = ".jp-OutputArea") -> dict[str, Any]:
        """Kernel status, the cell's prompt and the text under ``selector``, at one moment."""
        result: dict[str, Any] = self.page.evaluate(_SNAPSHOT_JS, [index, selector])
        return result

    def printed_json(self, index: int) -> Any:
        """Run a cell that prints one JSON document and return it."""
        self.run_done(index)
        return json.loads(self.outputs(index).last.inner_text())

    def shot(self, name: str, target: Locator | None = None, *, height: int = 0) -> Path:
        """A screenshot of the window, after scrolling ``target`` into view; ``height``: of a
        window that tall (for an output taller than the usual window), then back."""
        size = self.page.viewport_size
        if height and size:
            self.page.set_viewport_size({"width": size["width"], "height": height})
        if target is not None:
            target.scroll_into_view_if_needed()
        path = self.shots / f"{self.prefix}-{name}.png"
        self.page.screenshot(path=str(path))
        if height and size:
            self.page.set_viewport_size(size)
        self.steps.append(f"{time.monotonic() - self._t0:7.1f} s  {path.name}")
        return path

    def console_errors(self) -> list[str]:
        return [c for c in self.console if c.startswith(("error:", "pageerror:"))]

    def save_logs(self) -> None:
        """steps and console log next to the screenshots."""
        (self.shots / f"{self.prefix}-steps.txt").write_text("\n".join(self.steps) + "\n")
        (self.shots / f"{self.prefix}-console.log").write_text("\n".join(self.console) + "\n")

    def save_failure(self, lab_log: str) -> None:
        """A screenshot, the page's HTML and the server log, for a test that failed."""
        self.shot("failure")
        (self.shots / f"{self.prefix}-failure.html").write_text(self.page.content())
        (self.shots / f"{self.prefix}-jupyterlab.log").write_text(lab_log)


class Browser:
    """A JupyterLab server for a module's tests (started on first use, so that a test can
    first check that the browser is installed; stopped by :meth:`close`), and a fresh
    Chromium for each test.

    Playwright's sync API marks its own event loop as running in this thread while it is
    open, so it is started and stopped inside each test, never left open between tests
    (pytest-asyncio runs the async tests on its loop in this same thread).
    """

    def __init__(self, root: Path, home: Path, env: Mapping[str, str | None]) -> None:
        self.root = root
        self.home = home
        self.lab = JupyterLab(root, home / "jupyter", env)
        self._started = False

    @contextmanager
    def tab(self) -> Iterator[Page]:
        """A page in a new Chromium with an empty profile; closed at the end."""
        from playwright.sync_api import sync_playwright

        if not self._started:
            self.lab.start()
            self._started = True
        profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=self.home))
        with sync_playwright() as playwright:
            context = launch(playwright, profile)
            try:
                yield context.pages[0] if context.pages else context.new_page()
            finally:
                context.close()

    def close(self) -> None:
        self.lab.stop()


@contextmanager
def notebook_in_chromium(
    browser: Browser, notebook: Path, shots: Path, prefix: str, expected: tuple[str, ...] = ()
) -> Iterator[Notebook]:
    """``notebook`` open in JupyterLab in a new Chromium, its kernel idle; on the way out the
    console log is saved, and on a failure the screenshot, page and server log too. At the
    end, any error the page logged (a widget view that failed to render, say) fails the test,
    except those containing one of ``expected``.
    """
    require_browser()
    with browser.tab() as page:
        nb = Notebook(page, browser.root / notebook.name, shots, prefix)
        try:
            nb.open(browser.lab.lab_url(notebook.name, workspace=prefix))
            nb.shot("01-open")
            yield nb
            errors = [e for e in nb.console_errors() if not any(x in e for x in expected)]
            assert not errors, f"errors in the browser console: {errors}"
        except BaseException:
            nb.save_failure(browser.lab.log_tail(400))
            raise
        finally:
            nb.save_logs()
