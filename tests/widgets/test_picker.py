"""The model picker against fault servers playing llama-server (single-model and router):
which actions it offers and why not, how a failed action reads, and the default's mark and
label following ``LLMMagics.default_model``. Fast: no model runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb._session import Session, registry
from llm_nb._widgets import ModelPicker, _defaults
from llm_nb._widgets._picker import DEFAULT_MARK
from tests.faults import Conn, FaultServer, Request

HOSTILE = '<img src=x onerror="alert(1)">\n\x1b[31mboom\x1b[0m'


def host_of(url: str) -> str:
    return url.split("://")[1]


def llama(router: bool, *, load_fails: bool = False) -> Any:
    """A llama-server with models ``a`` and ``b``: one model (no ``role`` in ``/props``), or a
    router whose ``/models/load`` answers 500 with a hostile message if ``load_fails``."""

    async def play(req: Request, conn: Conn) -> None:
        if req.path.startswith("/props"):
            await conn.respond(200, {"role": "router"} if router else {"build_info": "b1"})
        elif req.path == "/v1/models":
            names = ["a", "b"] if router else ["a"]
            status = {"status": {"value": "unloaded"}} if router else {}
            data = [{"id": n, "object": "model", **status} for n in names]
            await conn.respond(200, {"object": "list", "data": data})
        elif req.path == "/models/load" and load_fails:
            await conn.respond(500, {"error": {"code": 500, "message": HOSTILE}})
        else:
            await conn.respond(404, {"error": {"code": 404, "message": "not here"}})

    return play


@pytest.fixture
def served(session: Session, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fault llama-server known to this test's registry; yields its host."""
    router, load_fails = request.param
    with FaultServer(llama(router, load_fails=load_fails)) as server:
        host = host_of(server.url)
        registry().get("llamacpp", host)
        yield host


@pytest.fixture(autouse=True)
def fresh_default() -> Iterator[None]:
    yield
    _defaults._chosen = None
    if InteractiveShell.initialized():
        sh = InteractiveShell.instance()
        sh.config.LLMMagics.pop("default_model", None)
        magics = sh.magics_manager.registry.get("LLMMagics")
        if magics is not None:
            magics.default_model = ""


def select_of(picker: ModelPicker, host: str) -> Any:
    (box,) = [
        b for b, g in zip(picker.groups.children, picker.catalog.groups, strict=True)
        if g.key == f"llamacpp@{host}"
    ]  # fmt: skip
    return box.children[1]


def marked(picker: ModelPicker, host: str) -> list[str]:
    return [v for label, v in select_of(picker, host).options if label.startswith(DEFAULT_MARK)]


@pytest.mark.parametrize("served", [(False, False)], indirect=True)
def test_single_model_server_disables_load_unload_pull_saying_why(served: str) -> None:
    picker = llm_nb.model_picker()
    # Nothing selected: acting on "the selected model" is not offered.
    for button in (picker.load_button, picker.unload_button, picker.delete_button):
        assert button.disabled and button.tooltip.startswith("select a model first")
    # Pull by name needs a server that pulls by name; a full id names its own server.
    picker.pull_name.value = "tinyllama"
    assert picker.pull_button.disabled and "pulls models by name" in picker.pull_button.tooltip
    picker.pull_name.value = "ollama:tinyllama"
    assert not picker.pull_button.disabled and not picker.pull_button.tooltip
    picker.pull_name.value = ""
    assert picker.pull_button.disabled and "type the name" in picker.pull_button.tooltip
    picker.select(f"llamacpp:a@{served}")
    for button in (picker.load_button, picker.unload_button, picker.pull_button):
        assert button.disabled, button.description
        assert "runs a single model" in button.tooltip and "router mode" in button.tooltip
    assert picker.delete_button.disabled
    assert picker.delete_button.tooltip == f"llama-server at {served} cannot delete models"
    # A click that still arrives (a stale frontend) explains instead of acting.
    picker.unload_button.click()
    assert "runs a single model" in picker.error.text
    assert picker.progress.layout.display == "none"  # nothing was started
    assert not picker.refresh_button.disabled


@pytest.mark.parametrize("served", [(True, True)], indirect=True)
async def test_failed_action_reads_as_failed(served: str) -> None:
    picker = llm_nb.model_picker()
    await picker.wait()
    picker.select(f"llamacpp:b@{served}")
    # A router can do all but delete.
    assert not picker.load_button.disabled and not picker.load_button.tooltip
    assert not picker.unload_button.disabled and not picker.pull_button.disabled
    assert picker.delete_button.disabled and "cannot delete" in picker.delete_button.tooltip
    seen: list[str] = []
    picker.progress_label.observe(lambda c: seen.append(c["new"]), "value")
    picker.load_button.click()
    await picker.wait()
    label = picker.progress_label.value
    assert seen[0] == f"load llamacpp:b@{served}…"
    assert label.startswith("load failed: llama-server at ") and "boom" in label
    # One line, plain text: the label widget shows it verbatim, never as markup.
    assert "\n" not in label and "\x1b" not in label
    assert isinstance(picker.progress_label, llm_nb._widgets._picker.w.Label)
    assert picker.bar.bar_style == "danger"
    assert "boom" in picker.error.text and "<img" not in picker.error.widget.value
    assert not picker.load_button.disabled and not picker.refresh_button.disabled
    for p in registry().providers():
        await p.aclose()


@pytest.mark.parametrize("served", [(True, False)], indirect=True)
def test_default_is_marked_and_follows_the_setting(served: str, shell: InteractiveShell) -> None:
    a, b = f"llamacpp:a@{served}", f"llamacpp:b@{served}"
    shell.run_cell(f"%config LLMMagics.default_model = {a!r}")
    picker = llm_nb.model_picker()
    assert marked(picker, served) == [a] and f"<code>{a}</code>" in picker.default_label.value
    assert dict((v, lbl) for lbl, v in select_of(picker, served).options)[a].startswith(
        DEFAULT_MARK + "a — unloaded"
    )

    # %config changes the live trait: the label and the mark follow at once.
    shell.run_line_magic("config", f"LLMMagics.default_model = {b!r}")
    assert marked(picker, served) == [b] and f"<code>{b}</code>" in picker.default_label.value
    assert picker.value is None  # marking is not selecting

    # Picking a model makes it the default, and the selection survives the relabelling.
    picker.select(a)
    assert marked(picker, served) == [a] and picker.value == a
    assert select_of(picker, served).value == a

    # After %reload_ext the new magics instance is watched too (hooked after the cell).
    shell.run_cell("%reload_ext llm_nb")
    shell.run_cell(f"%config LLMMagics.default_model = {b!r}")
    assert marked(picker, served) == [b] and f"<code>{b}</code>" in picker.default_label.value
    shell.run_line_magic("config", f"LLMMagics.default_model = {a!r}")
    assert marked(picker, served) == [a]
