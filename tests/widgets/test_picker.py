"""The model picker (llm_nb/_widgets/_picker.py). Against fault servers playing llama-server
(single-model and router): which actions it offers and why not, how a failed action reads,
the default's mark and label following ``LLMMagics.default_model``, the model's status while
a router loads it. Against the real llama-server (router) and the Ollama contract server: the
selection becomes ``%llm``'s default, loading and unloading, pulling and deleting."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

import llm_nb
from llm_nb._session import Session, registry
from llm_nb._widgets import ModelPicker, _defaults, _picker
from llm_nb._widgets._picker import DEFAULT_MARK
from tests.contract import OllamaContractServer
from tests.faults import Conn, FaultServer, Request
from tests.widgets.drive import forget, host_of

HOSTILE = '<img src=x onerror="alert(1)">\n\x1b[31mboom\x1b[0m'


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


def group_of(picker: ModelPicker, host: str, name: str = "llamacpp") -> Any:
    (box,) = [
        b for b, g in zip(picker.groups.children, picker.catalog.groups, strict=True)
        if g.key == f"{name}@{host}"
    ]  # fmt: skip
    return box


def statuses(picker: ModelPicker, host: str, name: str = "llamacpp") -> dict[str, str]:
    (group,) = [g for g in picker.catalog.groups if g.key == f"{name}@{host}"]
    assert group.error is None, group.error  # an unlisted server has no statuses to compare
    return {m.name: m.status for m in group.models}


def test_picker_selection_becomes_the_llm_default(
    shell: InteractiveShell, model: str, dead_host: str
) -> None:
    host = model.split("@")[1]
    llm_nb.provider(model)  # known to the registry, as after any call
    picker = llm_nb.model_picker()  # no running loop: the listing ran before this returns
    assert "llm-nb-picker" in picker._dom_classes
    title, select = group_of(picker, host).children
    assert "llm-nb-picker-models" in select._dom_classes and host in title.value
    ((label, value),) = select.options
    assert value == model and label.startswith("smollm2 — loaded · ")
    # A server that does not answer is a group with its one-line error; the rest works.
    _, error = group_of(picker, dead_host).children
    assert "llm-nb-picker-group-error" in error._dom_classes
    assert "no llama-server answers at" in error.value

    select.value = model  # what a click on the row does
    assert picker.value == model and model in picker.default_label.value
    magics = shell.magics_manager.registry["LLMMagics"]
    assert magics.default_model == model and _defaults.default_model() == model
    shell.run_cell_magic("llm", "-n 2 -o r", "Hi")
    r = shell.user_ns["r"]
    assert (r.provider, r.model, r.host) == ("llamacpp", "smollm2", host)

    # Chosen before the extension is loaded: the new magics instance starts with it.
    shell.run_line_magic("unload_ext", "llm_nb")
    try:
        select.value = None
        picker.select(model)
        assert _defaults.default_model() == model
    finally:
        shell.run_line_magic("load_ext", "llm_nb")
    assert shell.magics_manager.registry["LLMMagics"].default_model == model
    # And the chat panel uses it when given no model.
    chat = llm_nb.chat_panel(max_tokens=2)
    chat.send("Hi")
    assert chat.turns[0].record.host == host and chat.turns[0].model == model

    # Load on a single-model server: an inline error, and the picker still works.
    picker.load_button.click()
    assert "runs a single model" in picker.error.text and "\n" not in picker.error.text
    assert not picker.refresh_button.disabled
    picker.refresh_button.click()
    assert picker.error.text == "" and picker.value == model


async def test_picker_loads_and_unloads_on_a_router(kernel_loop: Any, llama_router: Any) -> None:
    host = host_of(llama_router.url)
    registry().get("llamacpp", host)
    picker = llm_nb.model_picker()
    await picker.wait()
    seen: list[str] = []
    picker.progress_label.observe(lambda c: seen.append(c["new"]), "value")

    picker.select(f"llamacpp:smollm2-b@{host}")
    picker.load_button.click()
    assert picker.load_button.disabled  # busy until the load and the relisting are done
    await picker.wait()
    assert statuses(picker, host) == {"smollm2-a": "unloaded", "smollm2-b": "loaded"}
    assert seen[-1] == f"loaded llamacpp:smollm2-b@{host}" and picker.bar.value == 1.0
    # Status lines polled while it loaded, if it took that long (a fast test above makes sure
    # they come), between the first and the last line.
    assert seen[0] == f"load llamacpp:smollm2-b@{host}…"
    assert all(re.fullmatch(r"smollm2-b: \w+ \(\d+\.\d s\)", s) for s in seen[1:-1]), seen
    assert picker.value == f"llamacpp:smollm2-b@{host}"  # kept across the relisting

    # Pull on a router: the router loads (downloading first if it must), status polled.
    picker.select(f"llamacpp:smollm2-a@{host}")
    picker.pull_button.click()
    await picker.wait()
    assert statuses(picker, host) == {"smollm2-a": "loaded", "smollm2-b": "unloaded"}
    assert seen[-1] == f"pulled llamacpp:smollm2-a@{host}"

    picker.unload_button.click()
    await picker.wait()
    assert statuses(picker, host)["smollm2-a"] == "unloaded" and picker.error.text == ""


async def test_picker_shows_the_model_status_while_it_loads(kernel_loop: Any) -> None:
    """A router load that takes a second (a fault server playing llama-server's router): the
    progress line shows the model's status, polled meanwhile, then "loaded"."""
    load_asked: list[float] = []

    async def router(req: Request, conn: Conn) -> None:
        if req.path.startswith("/props"):
            await conn.respond(200, {"role": "router", "max_instances": 1})
        elif req.path == "/v1/models":
            status = "unloaded"
            if load_asked:
                status = "loading" if time.monotonic() < load_asked[0] + 1.0 else "loaded"
            models = [{"id": "smollm2-b", "object": "model", "status": {"value": status}}]
            await conn.respond(200, {"object": "list", "data": models})
        elif req.path == "/models/load":
            load_asked.append(time.monotonic())
            await conn.respond(200, {"success": True})
        else:
            await conn.respond(404, {"error": {"code": 404, "message": "not here"}})

    with FaultServer(router) as server:
        host = host_of(server.url)
        registry().get("llamacpp", host)
        try:
            picker = llm_nb.model_picker()
            await picker.wait()
            assert statuses(picker, host) == {"smollm2-b": "unloaded"}
            seen: list[str] = []
            picker.progress_label.observe(lambda c: seen.append(c["new"]), "value")
            picker.select(f"llamacpp:smollm2-b@{host}")
            picker.load_button.click()
            await picker.wait()
            assert statuses(picker, host) == {"smollm2-b": "loaded"}
        finally:
            for p in registry().providers():
                if p.host == host:
                    await p.aclose()
            forget(host)
    assert seen[0] == f"load llamacpp:smollm2-b@{host}…"
    assert seen[-1] == f"loaded llamacpp:smollm2-b@{host}"
    polls = seen[1:-1]
    assert all(re.fullmatch(r"smollm2-b: load(ing|ed) \(\d+\.\d s\)", s) for s in polls), seen
    assert sum(": loading (" in s for s in polls) >= 2, seen  # polled every 0.2 s for 1 s


async def test_picker_pulls_with_progress_and_deletes_on_ollama(
    kernel_loop: Any, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_picker, "PROGRESS_EVERY_S", 0.0)  # draw every step, to see them all
    # A session of its own: the picker lists this test's server only, not every server
    # earlier tests registered (with them it once listed nothing on a loaded machine).
    with OllamaContractServer(None) as server:
        host = host_of(server.url)
        provider = session.registry.get("ollama", host)
        try:
            picker = llm_nb.model_picker()
            await picker.wait()
            assert "tinyllama:latest" not in statuses(picker, host, "ollama")
            picker.select(f"ollama:smollm2:135m@{host}")
            fractions: list[float] = []
            picker.bar.observe(lambda c: fractions.append(c["new"]), "value")
            picker.pull_name.value = "tinyllama"
            picker.pull_button.click()
            await picker.wait()
            assert picker.progress_label.value == f"pulled ollama:tinyllama@{host}"
            # Each layer's progress, as the stream reported it (4 steps per layer).
            assert {0.25, 0.5, 0.75} <= set(fractions) and fractions[-1] == 1.0
            assert picker.bar.bar_style == "success"
            assert "tinyllama:latest" in statuses(picker, host, "ollama")

            picker.select(f"ollama:tinyllama:latest@{host}")
            picker.delete_button.click()  # asks first
            assert picker.delete_button.description == "Really delete?"
            assert "tinyllama:latest" in statuses(picker, host, "ollama")
            picker.delete_button.click()
            await picker.wait()
            assert "tinyllama:latest" not in statuses(picker, host, "ollama")
            assert picker.value is None

            picker.select(f"ollama:smollm2:135m@{host}")
            picker.pull_name.value = "nope:1b"
            picker.pull_button.click()
            await picker.wait()
            assert "file does not exist" in picker.error.text
            assert picker.bar.bar_style == "danger" and not picker.pull_button.disabled
        finally:
            await provider.aclose()
    assert server.violations == []
