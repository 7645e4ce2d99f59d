"""Progress of an evaluation: an ipywidgets bar in a Jupyter kernel, else one stderr line.

Built in the caller's thread (a widget must be displayed from the thread that runs the
cell) and advanced from llm_nb's loop thread, at most ``every_s`` apart whatever the call
rate, so a fast run doesn't flood the front end. ipywidgets is imported only here, and only
in a kernel.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol, TextIO


class Progress(Protocol):
    def start(self, total: int, done: int) -> None: ...

    def advance(self, *, error: bool) -> None: ...

    def current(self, text: str) -> None: ...

    def close(self, note: str = "", *, failed: bool = False) -> None: ...


class _Counts:
    """Counts and the throttle shared by the real displays."""

    def __init__(self, label: str, every_s: float) -> None:
        self.label = label
        self.every_s = every_s
        self.total = self.done = self.errors = 0
        self.what = ""
        self.t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self.closed = False

    def start(self, total: int, done: int) -> None:
        with self._lock:
            self.total, self.done = total, done
        self._show(force=True)

    def advance(self, *, error: bool) -> None:
        with self._lock:
            self.done += 1
            self.errors += error
        self._show()

    def current(self, text: str) -> None:
        self.what = text
        self._show()

    def close(self, note: str = "", *, failed: bool = False) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        self._final(note, failed)

    def line(self) -> str:
        errors = f" · {self.errors} failed" if self.errors else ""
        what = f" · {self.what}" if self.what else ""
        elapsed = time.monotonic() - self.t0
        return f"{self.label}: {self.done}/{self.total} cells{errors} · {elapsed:.1f} s{what}"

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if self.closed or (not force and now - self._last < self.every_s):
                return
            self._last = now
        self._draw()

    def _draw(self) -> None:
        raise NotImplementedError

    def _final(self, note: str, failed: bool) -> None:
        raise NotImplementedError


class NullProgress:
    """progress=False: nothing shown, except how to resume after an interrupt."""

    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, *, error: bool) -> None:
        pass

    def current(self, text: str) -> None:
        pass

    def close(self, note: str = "", *, failed: bool = False) -> None:
        if failed and note:
            print(note, file=sys.stderr, flush=True)


class TextProgress(_Counts):
    """One line rewritten in place on a terminal; on a pipe or log, only the final line."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 0.2) -> None:
        super().__init__(label, every_s)
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty())

    def _draw(self) -> None:
        if self.live:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()

    def _final(self, note: str, failed: bool) -> None:
        end = f" · {note}" if note else ""
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(prefix + self.line() + end + "\n")
        self.stream.flush()


class WidgetProgress(_Counts):
    """An ipywidgets bar with a label beside it, displayed when built."""

    def __init__(self, label: str, every_s: float = 0.1) -> None:
        super().__init__(label, every_s)
        import importlib

        ipywidgets = importlib.import_module("ipywidgets")  # untyped
        display: Any = importlib.import_module("IPython.display").display
        self.bar: Any = ipywidgets.IntProgress(min=0, max=1, value=0, description="evaluate")
        self.text: Any = ipywidgets.Label(value=self.line())
        display(ipywidgets.HBox([self.bar, self.text]))

    def _draw(self) -> None:
        self.bar.max = max(self.total, 1)
        self.bar.value = self.done
        self.text.value = self.line()

    def _final(self, note: str, failed: bool) -> None:
        self._draw()
        self.bar.bar_style = "danger" if failed or self.errors else "success"
        if note:
            self.text.value = f"{self.line()} · {note}"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not terminal IPython, not a script)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return getattr(shell, "kernel", None) is not None


def make_progress(enabled: bool, label: str) -> Progress:
    if not enabled:
        return NullProgress()
    if in_kernel():
        try:
            return WidgetProgress(label)
        except ImportError:
            pass
    return TextProgress(label)
