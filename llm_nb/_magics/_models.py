"""``%llm_models``: one table of every known server's models, and load/unload/pull/delete.

"Known" means: providers already in use (the registry), providers configured through the
environment or the user config file, and local servers found by discovery on their default
ports. Discovery runs on the first listing and on ``refresh``; after that the registry
remembers what it found, so a listing only asks each server for its models. Servers are
asked concurrently, each with a short timeout, and one that does not answer becomes an
``unreachable`` row rather than an error for the whole table.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from typing import TYPE_CHECKING, Any

from .._types import PullProgress

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("provider", "host", "model", "status", "size", "quantization", "context")


def models_frame(discover: bool) -> pd.DataFrame:
    """The table, one row per model (or per server that did not answer)."""
    import pandas as pd

    from .._session import run_sync

    rows, problems = run_sync(_collect(discover))
    for problem in problems:
        print(f"llm_nb: {problem}", file=sys.stderr)
    if not rows:
        print(
            "llm_nb: no model server found; start llama-server (port 8080) or Ollama (11434), "
            "set LLAMA_CPP_URL / OLLAMA_HOST / OPENAI_API_KEY, or use the model 'local'",
            file=sys.stderr,
        )
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    # Nullable integers: an unreachable server's row must not turn 4096 into 4096.0.
    frame["context"] = frame["context"].astype("Int64")
    return frame


async def _collect(discover: bool) -> tuple[list[dict[str, Any]], list[str]]:
    from .._present._catalog import catalog, model_row

    found = await catalog(discover)
    problems = list(found.problems)
    rows: list[dict[str, Any]] = []
    for group in found.groups:
        if group.error is not None:
            p = group.provider
            status = "unreachable" if group.unreachable else "error"
            rows.append(
                dict.fromkeys(COLUMNS)
                | {"provider": p.name, "host": p.host, "model": "", "status": status}
            )
            if status == "error":  # unreachable needs no words: the row says it
                problems.append(group.error)
            continue
        rows.extend(model_row(info) for info in group.models)
    return rows, problems


# -- managing one model -----------------------------------------------------------------------


def manage(action: str, model_id: str, *, rich: bool, throttle_s: float) -> str:
    """Run load/unload/pull/delete on ``model_id``; returns the line to print."""
    from .._api import provider
    from .._session import iterate_sync, run_sync

    p, name = provider(model_id)
    where = f"{p.name}:{name}@{p.host}"
    if action == "pull":
        progress = _progress(rich, where, throttle_s)
        try:
            for step in iterate_sync(lambda: p.pull(name)):
                progress.step(step)
        finally:
            progress.close()
        return f"pulled {where}"
    if action == "load":
        run_sync(p.load(name))
        return f"loaded {where}"
    if action == "unload":
        run_sync(p.unload(name))
        return f"unloaded {where}"
    run_sync(p.delete(name))
    return f"deleted {where}"


class _TextProgress:
    """Pull progress as printed lines: each step once, its percentage now and then, and
    where each step got to when the next one starts."""

    #: A terminal or a saved notebook should not fill with one line per chunk.
    PERCENT_EVERY_S = 1.0

    def __init__(self, label: str) -> None:
        self._label = label
        self._last: PullProgress | None = None
        self._printed: PullProgress | None = None
        self._next = 0.0

    def step(self, p: PullProgress) -> None:
        now = time.perf_counter()
        last = self._last
        if last is None or p.status != last.status:
            if last is not None and last.fraction is not None and self._printed is not last:
                self._print(last)
            self._print(p)
            self._next = now + self.PERCENT_EVERY_S
        elif p.fraction is not None and now >= self._next:
            self._print(p)
            self._next = now + self.PERCENT_EVERY_S
        self._last = p

    def _print(self, p: PullProgress) -> None:
        percent = "" if p.fraction is None else f" {p.fraction:.0%}"
        print(f"{self._label}: {p.status}{percent}", flush=True)
        self._printed = p

    def close(self) -> None:
        pass


class _WidgetProgress:
    """Pull progress as an ipywidgets bar and label, redrawn at most once per throttle."""

    def __init__(self, label: str, throttle_s: float) -> None:
        import ipywidgets as w  # type: ignore[import-untyped]

        from .._present._display import ipython_display

        self._bar = w.IntProgress(min=0, max=1000, description="pull", bar_style="info")
        self._text = w.Label(label)
        self._label = label
        self._throttle_s = throttle_s
        self._next = 0.0
        self._last: PullProgress | None = None
        ipython_display()(w.HBox([self._bar, self._text]))

    def step(self, p: PullProgress) -> None:
        self._last = p
        now = time.perf_counter()
        if now >= self._next:
            self._draw(p)
            self._next = now + self._throttle_s

    def _draw(self, p: PullProgress) -> None:
        if p.fraction is not None:
            self._bar.value = round(p.fraction * 1000)
        percent = "" if p.fraction is None else f" {p.fraction:.0%}"
        self._text.value = f"{self._label}: {p.status}{percent}"

    def close(self) -> None:
        if self._last is not None:
            self._draw(self._last)
        ok = self._last is not None and self._last.status == "success"
        self._bar.bar_style = "success" if ok else "danger"


def _progress(rich: bool, label: str, throttle_s: float) -> _TextProgress | _WidgetProgress:
    if rich and importlib.util.find_spec("ipywidgets") is not None:
        return _WidgetProgress(label, throttle_s)
    return _TextProgress(label)
