"""The compare panel: one prompt to several models, answers streaming side by side, then the
run's stats table (``llm_nb.stats(run_id)``) and a small plot of ttft and tokens/s.

All answers stream concurrently on one loop, so the wall time is the slowest model's. The
calls share one stats run id, so the table holds exactly this comparison's rows, the same
rows ``llm_nb.stats(run_id)`` returns afterwards.
"""

from __future__ import annotations

import html
import io
import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w  # type: ignore[import-untyped]

from .._api import provider
from .._errors import LLMError
from .._options import ChatOptions
from .._present._calls import Call, column_labels
from .._present._catalog import Catalog, catalog
from .._present._display import RenderBudget
from .._present._figures import figures, live_figures
from .._present._render import Column, columns_bundle, columns_text
from .._present._runner import Frames, pump
from .._present._tables import run_frame, run_table
from .._present._work import Post, Worker
from .._stats import new_run
from .._stats._recorder import recording_enabled
from .._terminal import strip_controls
from .._units import header
from ._defaults import throttle_s
from ._parts import AnswerView, ErrorLine, Panel, fill_width, fit_content, styled
from ._prompt import focus, prompt_box

if TYPE_CHECKING:
    import pandas as pd


class ComparePanel(Panel):
    """See :func:`compare_panel`."""

    def __init__(
        self,
        models: Sequence[str] | None = None,
        *,
        throttle_s: float | None = None,
        **options: Any,
    ) -> None:
        ChatOptions.from_kwargs(**options)  # a bad option fails here, not on Run
        self.options = options
        self._throttle_s = throttle_s
        given = list(models or ())
        #: The multi-select's entries as (label, key), and the model id of each key: a model
        #: given twice is two entries ("id #1", "id #2"), so it gets two columns.
        self._entries = _entries(given)
        self._targets = {key: model for (_, key), model in zip(self._entries, given, strict=True)}
        self.models = styled(
            w.SelectMultiple(
                options=self._entries, value=tuple(key for _, key in self._entries), rows=6,
                description="models", layout=w.Layout(flex="1 1 auto", width="auto"),
            ),
            "llm-nb-compare-models",
        )  # fmt: skip
        self.refresh_button = styled(
            w.Button(description="Refresh models", icon="refresh", layout=fit_content()),
            "llm-nb-compare-refresh",
        )
        self.prompt = styled(
            prompt_box(
                "One prompt for every model… (Shift+Enter runs, Escape stops)",
                on_submit=self.run,
                on_stop=self.stop,
                layout=fill_width(),
            ),
            "llm-nb-compare-prompt",
        )
        self.run_button = styled(
            w.Button(description="Run", button_style="primary", icon="play"), "llm-nb-compare-run"
        )
        self.stop_button = styled(
            w.Button(description="Stop", icon="stop", disabled=True), "llm-nb-compare-stop"
        )
        self.columns = styled(w.HBox(layout=fill_width()), "llm-nb-compare-columns")
        # JupyterLab's class for rendered HTML, so the table is styled as a DataFrame is.
        self.table = styled(
            w.HTML(layout=fill_width()), "llm-nb-compare-stats", "jp-RenderedHTMLCommon"
        )
        self.plot = styled(w.VBox(), "llm-nb-compare-plot")
        self.error = ErrorLine("llm-nb-compare-error")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        super().__init__(
            [
                w.HBox([self.models, self.refresh_button]),
                self.prompt,
                w.HBox([self.run_button, self.stop_button]),
                self.error.widget,
                self.columns,
                self.table,
                self.plot,
            ],
            "llm-nb-compare",
        )
        #: The calls of the last run, in column order, and that run's stats run id.
        self.calls: list[Call] = []
        self.run_id: str | None = None
        self._frames = Frames([], self._draw)
        self._answers: list[AnswerView] = []
        self._footers: list[Any] = []
        self._budget = RenderBudget()
        self.worker = Worker(self.error.show)
        self.lister = Worker(self.error.show)
        self.refresh(discover=True)

    def __repr__(self) -> str:
        return (
            "llm_nb compare panel (a live widget; finished answers are saved in the output below)"
        )

    # -- models ---------------------------------------------------------------------------

    def refresh(self, discover: bool = True) -> None:
        """List the models of every known server into the multi-select (in the background
        in a kernel)."""
        if self.lister.busy:
            return
        self.refresh_button.disabled = True
        self.lister.start(
            lambda post: self._list(post, discover),
            lambda: setattr(self.refresh_button, "disabled", False),
        )

    async def _list(self, post: Post, discover: bool) -> None:
        found = await catalog(discover)
        post(lambda: self._show_models(found))

    def _show_models(self, found: Catalog) -> None:
        chosen = tuple(self.models.value)
        keys = {key for _, key in self._entries}
        self._entries += [(m, m) for m in dict.fromkeys(found.model_ids()) if m not in keys]
        self.models.options = self._entries
        self.models.value = chosen

    # -- a run ----------------------------------------------------------------------------

    def run(self, prompt: str | None = None) -> None:
        """Send the prompt to every selected model; answers stream into the columns."""
        if prompt is not None:
            self.prompt.value = prompt
        text = self.prompt.value.strip()
        models = [self._targets.get(key, key) for key in self.models.value]
        if self.worker.busy:
            self.error.show("a comparison is still running; Stop it first")
            return
        if not text or not models:
            self.error.show("pick at least one model and write a prompt")
            return
        calls = []
        try:
            for label, model in zip(column_labels(models), models, strict=True):
                p, name = provider(model)
                calls.append(Call(label, p.stream(name, text, **self.options)))
        except LLMError as exc:
            self.error.show(exc)
            return
        self.error.clear()
        self.calls = calls
        self.run_id = None
        self._build_columns(calls)
        self.table.value = ""
        self.plot.children = ()
        self._running(True)
        self._frames = Frames(calls, self._draw)
        self.worker.start(self._run_all, self._ended)
        focus(self.prompt)

    def stop(self) -> None:
        """Stop every answer still streaming; what arrived stays."""
        self.worker.stop()

    async def wait(self) -> None:
        """Until the running comparison (and the model listing) has ended."""
        await self.worker.wait()
        await self.lister.wait()

    @property
    def throttle_s(self) -> float:
        return throttle_s(self._throttle_s)

    async def _run_all(self, post: Post) -> None:
        with new_run() as run_id:
            self.run_id = run_id
            await pump(self.calls, self._frames, self.throttle_s, post)

    # -- drawing --------------------------------------------------------------------------

    def _build_columns(self, calls: Sequence[Call]) -> None:
        self._answers, self._footers, columns = [], [], []
        for call in calls:
            # A model id has no spaces: it breaks anywhere rather than run into the next column.
            title = styled(
                w.HTML(f'<b style="overflow-wrap:anywhere">{html.escape(call.label)}</b>'),
                "llm-nb-compare-title",
            )
            answer = AnswerView("llm-nb-compare-answer")
            answer.layout.flex = "1 1 auto"  # columns share one height; footers line up below
            answer.show(call.record, final=False)
            footer = styled(w.Label(""), "llm-nb-compare-figures")
            self._answers.append(answer)
            self._footers.append(footer)
            columns.append(
                styled(
                    w.VBox(
                        [title, answer, footer],
                        layout=w.Layout(flex="1 1 0", min_width="12em", padding="0 0.4em"),
                    ),
                    "llm-nb-compare-col",
                )
            )
        self.columns.children = columns

    def _draw(self, final: bool) -> None:
        if not self._budget.due(final):
            return
        started = time.perf_counter()
        for call, answer, footer in zip(self.calls, self._answers, self._footers, strict=True):
            note = _note(call) if final else None
            answer.show(call.record, final=final, note=note)
            done = final or call.done
            footer.value = _footer(call) if done else live_figures(call.record)
        if final:
            self._finish()
        else:
            self._budget.spent(started)

    def _finish(self) -> None:
        failed = [c for c in self.calls if c.error is not None]
        if failed:
            self.error.show(
                f"{len(failed)} of {len(self.calls)} models failed; "
                f"{failed[0].label}: {' '.join(str(failed[0].error).split())}"
            )
        frame = run_frame(self.calls, self.run_id) if self.run_id else None
        table = None
        if frame is not None and len(frame):
            table = run_table(frame)
            self.table.value = table.html
            self.plot.children = (_plot_widget(frame),)
        elif not recording_enabled():
            self.table.value = "<i>no stats table: recording is off (LLM_NB_RECORD=0)</i>"
        columns = [
            Column(c.label, c.record.text, _footer(c), _note(c), failed=c.error is not None)
            for c in self.calls
        ]
        bundle = columns_bundle(columns, "markdown")
        plain = columns_text(columns)
        if table is not None:
            plain += "\n\n" + table.text
        self.saved.update(bundle["text/html"] + (table.html if table else ""), plain)

    def _ended(self) -> None:
        self._frames.end()  # drawn already, unless stopped before the streams even started
        self._running(False)

    def _running(self, on: bool) -> None:
        self.run_button.disabled = on
        self.stop_button.disabled = not on


def _entries(models: Sequence[str]) -> list[tuple[str, str]]:
    """(label, key) per given model; a repeated model's later entries get their label as key."""
    seen: set[str] = set()
    out = []
    for label, model in zip(column_labels(models), models, strict=True):
        out.append((label, label if model in seen else model))
        seen.add(model)
    return out


def _note(call: Call) -> str | None:
    if call.interrupted:
        return "stopped"
    if call.error is not None:
        return f"error: {' '.join(strip_controls(str(call.error)).split())}"
    return None


def _footer(call: Call) -> str:
    return str(figures(call.record)) if call.record.trace.token_times_ns else ""


def _plot_widget(frame: pd.DataFrame) -> Any:
    png = plot_png(frame)
    if png is None:
        return styled(
            w.HTML("<i>matplotlib is not installed, so there is no plot; the table has the "
                   "figures (pip install matplotlib for the plot)</i>"),
            "llm-nb-compare-plot-note",
        )  # fmt: skip
    return styled(w.Image(value=png, format="png"), "llm-nb-compare-plot-image")


def plot_png(frame: pd.DataFrame) -> bytes | None:
    """Bars of ttft_s and output_tps per answer, labelled as its column, as PNG bytes; None
    without matplotlib."""
    fig = plot_figure(frame)
    if fig is None:
        return None
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def plot_figure(frame: pd.DataFrame) -> Any:
    """The figure of :func:`plot_png` (a ``matplotlib.figure.Figure``), or None.

    Uses matplotlib's object API (no pyplot), so it neither changes the user's backend nor
    leaves figures open.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    labels = [str(label) for label in frame["label"]]
    fig = Figure(figsize=(8, 0.5 + 0.35 * len(labels)), dpi=96, layout="constrained")
    ttft_ax, tps_ax = fig.subplots(1, 2, sharey=True)
    positions = list(range(len(labels)))
    for ax, column, title in (
        (ttft_ax, "ttft_s", header("ttft_s")),
        (tps_ax, "output_tps", header("output_tps")),
    ):
        values = [0.0 if math.isnan(v) else float(v) for v in frame[column]]
        ax.barh(positions, values, color="#4c78a8")
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
    ttft_ax.set_yticks(positions, labels)
    ttft_ax.invert_yaxis()
    return fig
