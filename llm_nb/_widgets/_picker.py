"""The model picker: every known server's models, grouped by server, with their status.

Selecting a model makes it the default of ``%%llm`` and of the panels (see ``_defaults``).
Load, Unload and Delete act on the selected model; Pull downloads the model named in the
box (or the selected one) onto the selected model's server. Ollama's pull stream feeds the
progress bar (each layer's bytes, layer after layer); on a llama-server router, Pull and Load
ask the router to load the model (it downloads it first if it must) and the panel polls the
router's model status until it is loaded. An action the selected model's server cannot do
(Load, Unload or Pull on a single-model llama-server, any of them on an OpenAI-compatible
server) is disabled, its tooltip saying why. A failed action says so on the progress line and
its error shows on one line; the panel keeps working.

The list marks the current default model with a star, and the "default for %%llm" line
follows the setting, also when ``%config LLMMagics.default_model`` changes it.
"""

from __future__ import annotations

import asyncio
import functools
import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ipywidgets as w  # type: ignore[import-untyped]

from .._api import provider
from .._errors import InvalidOptionError, LLMError
from .._modelid import PROVIDER_ALIASES
from .._present._catalog import ACTIONS, Catalog, Group, catalog, size_text
from .._present._work import Post, Worker
from .._terminal import strip_controls
from .._types import ModelInfo, PullProgress
from ..providers.base import Provider
from ._defaults import default_model, set_default_model, watch_default
from ._parts import ErrorLine, Panel, fill_width, one_line, styled

#: Seconds between status polls while a model loads or unloads.
POLL_S = 0.2
#: Least seconds between two redraws of the pull progress bar.
PROGRESS_EVERY_S = 0.1
#: The mark before the default model's entry in the list.
DEFAULT_MARK = "★ "


class ModelPicker(Panel):
    """See :func:`model_picker`."""

    def __init__(self) -> None:
        self.refresh_button = styled(
            w.Button(description="Refresh", icon="refresh"), "llm-nb-picker-refresh"
        )
        self.groups = styled(w.VBox(), "llm-nb-picker-groups")
        self.load_button = styled(w.Button(description="Load"), "llm-nb-picker-load")
        self.unload_button = styled(w.Button(description="Unload"), "llm-nb-picker-unload")
        self.pull_name = styled(
            w.Text(
                placeholder="model to pull (default: the selected one)",
                layout=w.Layout(width="auto", flex="1 1 auto"),
            ),
            "llm-nb-picker-pull-name",
        )
        self.pull_button = styled(w.Button(description="Pull"), "llm-nb-picker-pull")
        self.delete_button = styled(w.Button(description="Delete"), "llm-nb-picker-delete")
        self.bar = styled(
            w.FloatProgress(min=0.0, max=1.0, value=0.0, bar_style="info"),
            "llm-nb-picker-progress-bar",
        )
        self.progress_label = styled(w.Label(""), "llm-nb-picker-progress-label")
        self.progress = styled(w.HBox([self.bar, self.progress_label]), "llm-nb-picker-progress")
        self.progress.layout.display = "none"
        self.default_label = styled(w.HTML(), "llm-nb-picker-default")
        self.error = ErrorLine("llm-nb-picker-error")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.load_button.on_click(lambda _: self.act("load"))
        self.unload_button.on_click(lambda _: self.act("unload"))
        self.pull_button.on_click(lambda _: self.act("pull"))
        self.delete_button.on_click(lambda _: self.act("delete"))
        self.pull_name.observe(lambda _: self._enable(), "value")
        self._buttons = {
            "load": self.load_button, "unload": self.unload_button, "pull": self.pull_button,
            "delete": self.delete_button,
        }  # fmt: skip
        self._actions = [
            self.refresh_button, self.load_button, self.unload_button, self.pull_button,
            self.delete_button,
        ]  # fmt: skip
        super().__init__(
            [
                w.HBox([self.refresh_button, self.default_label]),
                self.groups,
                w.HBox([self.load_button, self.unload_button, self.delete_button]),
                w.HBox([self.pull_name, self.pull_button]),
                self.progress,
                self.error.widget,
            ],
            "llm-nb-picker",
        )
        #: The last listing, and the Select widget of each server group, by group key.
        self.catalog = Catalog([], [])
        self._selects: dict[str, Any] = {}
        self._value: str | None = None
        self._syncing = False
        self._confirm_delete: str | None = None
        self.worker = Worker(self.error.show)
        self._shown_default = ""
        self._show_default()
        watch_default(self._show_default)
        self.refresh(discover=True)

    def __repr__(self) -> str:
        return "llm_nb model picker (a live widget)"

    # -- selection ------------------------------------------------------------------------

    @property
    def value(self) -> str | None:
        """The selected model id (also the default of ``%%llm``), or None."""
        return self._value

    def select(self, model_id: str) -> None:
        """Select a listed model, as a click on it would."""
        found = self.catalog.find(model_id)
        if found is None:
            raise ValueError(f"{model_id!r} is not listed; listed: {self.catalog.model_ids()}")
        self._selects[found[0].key].value = model_id

    def _picked(self, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] is None:
            return
        model_id = str(change["new"])
        self._syncing = True
        try:
            for select in self._selects.values():
                if select is not change["owner"]:
                    select.value = None
        finally:
            self._syncing = False
        self._value = model_id
        self._reset_delete()
        set_default_model(model_id)
        self._show_default()
        self._enable()

    def _show_default(self) -> None:
        """Show the current default in the label and mark its entry in the list."""
        current = default_model()
        if current == self._shown_default:
            return
        self._shown_default = current
        self.default_label.value = (
            f"default for <code>%%llm</code>: <code>{html.escape(current)}</code>"
        )
        self._syncing = True
        try:
            for group in self.catalog.groups:
                select = self._selects.get(group.key)
                if select is not None:
                    # New options clear the selection; the same value is put back.
                    chosen = select.value
                    select.options = self._options(group)
                    select.value = chosen
        finally:
            self._syncing = False

    def _options(self, group: Group) -> list[tuple[str, str]]:
        return [
            ((DEFAULT_MARK if m.id == self._shown_default else "") + _option_label(m), m.id)
            for m in group.models
        ]

    # -- listing --------------------------------------------------------------------------

    def refresh(self, discover: bool = True) -> None:
        """List the models again (``discover`` probes the local default ports too)."""
        if self._begin():
            self.worker.start(lambda post: self._relist(post, discover), self._end)

    async def wait(self) -> None:
        """Until the listing or action in progress has ended."""
        await self.worker.wait()

    async def _relist(self, post: Post, discover: bool) -> None:
        found = await catalog(discover)
        post(lambda: self._show(found))

    def _show(self, found: Catalog) -> None:
        self._show_default()
        self.catalog = found
        boxes: list[Any] = []
        selects: dict[str, Any] = {}
        self._syncing = True
        try:
            for group in found.groups:
                boxes.append(self._group_box(group, selects))
        finally:
            self._syncing = False
        for select in self._selects.values():
            select.unobserve_all()
        self._selects = selects
        self.groups.children = boxes
        if self._value is not None and found.find(self._value) is None:
            self._value = None
        self._enable()
        if found.problems:
            self.error.show("; ".join(found.problems))
        elif not found.groups:
            self.error.show(
                "no model server found; start llama-server (port 8080) or Ollama (11434), or "
                "set LLAMA_CPP_URL / OLLAMA_HOST / OPENAI_API_KEY"
            )

    def _group_box(self, group: Group, selects: dict[str, Any]) -> Any:
        p = group.provider
        detail = f" · {html.escape(group.detail)}" if group.detail else ""
        title = styled(
            w.HTML(f"<b>{html.escape(p.label)}</b> · {html.escape(p.host)}{detail}"),
            "llm-nb-picker-group-title",
        )
        if group.error is not None:
            body = styled(
                w.HTML(
                    '<span style="color:var(--jp-error-color1,#c00)">'
                    f"{html.escape(group.error)}</span>"
                ),
                "llm-nb-error",
                "llm-nb-picker-group-error",
            )
        else:
            options = self._options(group)
            chosen = self._value if any(v == self._value for _, v in options) else None
            # At least two rows: browsers draw a one-row <select> as a closed drop-down, which
            # shows nothing until a model is chosen; a list box shows the models and status.
            body = styled(
                w.Select(
                    options=options, value=chosen, rows=max(2, min(8, len(options))),
                    layout=fill_width(),
                ),
                "llm-nb-picker-models",
            )  # fmt: skip
            body.observe(self._picked, "value")
            selects[group.key] = body
        return styled(w.VBox([title, body]), "llm-nb-picker-group")

    # -- load / unload / pull / delete ----------------------------------------------------

    def act(self, action: str) -> None:
        """Run ``load``, ``unload``, ``pull`` or ``delete`` (see the module docstring)."""
        refused = self._refused(action)
        if refused:
            self.error.show(refused)
            return
        if action == "delete" and self._value is not None and self._confirm_delete is None:
            self._confirm_delete = self._value
            self.delete_button.description = "Really delete?"
            self.delete_button.button_style = "danger"
            return
        try:
            p, name = self._target(action)
        except LLMError as exc:
            self.error.show(exc)
            return
        self._reset_delete()
        if self._begin():
            self.worker.start(lambda post: self._run_action(post, action, p, name), self._end)

    def _target(self, action: str) -> tuple[Provider, str]:
        typed = self.pull_name.value.strip() if action == "pull" else ""
        if typed and typed.partition(":")[0].lower() in PROVIDER_ALIASES:
            return provider(typed)
        if self._value is None:
            if typed:
                for group in self.catalog.groups:
                    if "pull" in group.provider.capabilities:
                        return group.provider, typed
            raise InvalidOptionError(f"select a model first (or type a full model id to {action})")
        p, name = provider(self._value)
        return p, typed or name

    async def _run_action(self, post: Post, action: str, p: Provider, name: str) -> None:
        where = f"{p.name}:{name}@{p.host}"
        post(lambda: self._progress(f"{action} {where}…", None, "info"))
        try:
            if action == "pull" and ("pull" in p.capabilities or "load" not in p.capabilities):
                await self._pull(post, p, name, where)
            elif action in ("load", "pull"):
                await self._poll_while(post, p.load(name), p, name)
            elif action == "unload":
                await self._poll_while(post, p.unload(name), p, name)
            else:
                await p.delete(name)
        except BaseException as exc:
            # One line of plain text: the Label widget shows it as text, never as markup.
            # A server's message may carry terminal escape sequences: stripped.
            failed = " ".join(strip_controls(f"{action} failed: {one_line(exc)}").split())
            post(lambda: self._progress(failed, None, "danger"))
            raise
        done = {"load": "loaded", "unload": "unloaded", "pull": "pulled", "delete": "deleted"}
        post(lambda: self._progress(f"{done[action]} {where}", 1.0, "success"))
        await self._relist(post, discover=False)

    async def _pull(self, post: Post, p: Provider, name: str, where: str) -> None:
        """Ollama's pull stream: the bar shows the layer being fetched (one ``digest``
        after the other), the label its status and percentage."""
        next_draw = 0.0
        last: PullProgress | None = None
        async for step in p.pull(name):
            last = step
            now = time.monotonic()
            if now >= next_draw:
                post(_drawer(self, where, step))
                next_draw = now + PROGRESS_EVERY_S
        if last is not None:
            post(_drawer(self, where, last))

    async def _poll_while(self, post: Post, work: Awaitable[None], p: Provider, name: str) -> None:
        """Await ``work`` (a load or unload), showing the model's status meanwhile."""
        task = asyncio.ensure_future(work)
        started = time.monotonic()
        try:
            while not task.done():
                await asyncio.wait([task], timeout=POLL_S)
                if task.done():
                    break
                status = await _status(p, name)
                elapsed = time.monotonic() - started
                post(functools.partial(self._progress, f"{name}: {status} ({elapsed:.1f} s)"))
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        task.result()

    # -- state ----------------------------------------------------------------------------

    def _begin(self) -> bool:
        if self.worker.busy:
            self.error.show("busy with the previous action; wait for it to finish")
            return False
        self.error.clear()
        for button in self._actions:
            button.disabled = True
        return True

    def _end(self) -> None:
        self.refresh_button.disabled = False
        self._enable()

    def _refused(self, action: str) -> str:
        """Why ``action`` cannot run on the current selection, or "" if it can."""
        if action == "pull" and self.pull_name.value.strip():
            typed = self.pull_name.value.strip()
            if typed.partition(":")[0].lower() in PROVIDER_ALIASES:
                return ""  # a full id names its own server, which answers for itself
            if self._value is None:
                # Pulled onto the first listed server that pulls (see _target).
                if any("pull" in g.provider.capabilities for g in self.catalog.groups):
                    return ""
                return "no listed server pulls models by name; select a model first"
        if self._value is None:
            if action == "pull":
                return "select a model, or type the name of one to pull"
            return f"select a model first (to {action} it)"
        found = self.catalog.find(self._value)
        return "" if found is None else found[0].refused.get(action, "")

    def _enable(self) -> None:
        """Enable the actions the selection allows; a disabled one's tooltip says why."""
        if self.worker.busy:
            return
        for action in ACTIONS:
            why = self._refused(action)
            button = self._buttons[action]
            button.disabled = bool(why)
            button.tooltip = why or ""  # ipywidgets 7 takes no None

    def _reset_delete(self) -> None:
        self._confirm_delete = None
        self.delete_button.description = "Delete"
        self.delete_button.button_style = ""

    def _progress(self, text: str, fraction: float | None = None, style: str | None = None) -> None:
        self.progress.layout.display = None
        self.progress_label.value = text
        if fraction is not None:
            self.bar.value = fraction
        if style is not None:
            self.bar.bar_style = style


def _drawer(picker: ModelPicker, where: str, step: PullProgress) -> Callable[[], None]:
    """A redraw of the pull progress at ``step``."""
    fraction = step.fraction
    percent = "" if fraction is None else f" {fraction:.0%}"
    text = f"{where}: {step.status}{percent}"
    return lambda: picker._progress(text, fraction)


async def _status(p: Provider, name: str) -> str:
    try:
        infos = await p.models()
    except LLMError as exc:
        return f"status unknown ({type(exc).__name__})"
    for info in infos:
        if info.name == name or name in (info.details.get("aliases") or ()):
            return info.status
    return "not listed yet"


def _option_label(info: ModelInfo) -> str:
    extra = " · ".join(x for x in (size_text(info.size_bytes), info.quantization) if x)
    return f"{info.name} — {info.status}" + (f" · {extra}" if extra else "")
