"""What a notebook user does first, in a real ipykernel, against a loopback fake llama-server:
``%load_ext llm_nb``, ``%%llm`` streaming live, side by side, an interrupt, ``%llm_models``,
``%llm_stats``, and the three panels created and driven from Python.

It needs no native server, so CI also runs it in a virtualenv holding Google Colab's pinned
stack (constraints/colab.txt: IPython 7.34, ipywidgets 7.7, traitlets 5.7, ...), where it is
the check that llm_nb works there; here it runs on whatever this environment has.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults import LLAMACPP, Conn, FaultServer, Request
from tests.kernels import iopub_until_idle, started_kernel

pytestmark = pytest.mark.timeout(240)

TOKENS = [f" w{i}" for i in range(400)]
PROPS = {
    "default_generation_settings": {"n_ctx": 2048, "params": {}},
    "total_slots": 1,
    "model_path": "/models/m.gguf",
    "model_alias": "m",
    "build_info": "b1-fake",
}
MODELS = {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "llamacpp"}]}


async def fake_llama_server(req: Request, conn: Conn) -> None:
    """llama-server's routes that llm_nb uses, with answers of ``max_tokens`` tokens sent
    30 ms apart (so a display updates several times while the cell is busy)."""
    path = req.path.split("?")[0]
    if req.method == "GET" and path == "/health":
        await conn.respond(200, {"status": "ok"})
    elif req.method == "GET" and path in ("/v1/models", "/models"):
        await conn.respond(200, MODELS)
    elif req.method == "GET" and path == "/props":
        await conn.respond(200, PROPS)
    elif req.method == "POST" and path == "/v1/chat/completions":
        body = req.json() or {}
        tokens = TOKENS[: int(body.get("max_tokens") or body.get("n_predict") or 20)]
        if not body.get("stream"):
            await conn.respond(200, LLAMACPP.whole("".join(tokens)))
            return
        await conn.head(200, {"content-type": LLAMACPP.content_type})
        await conn.send(LLAMACPP.first())
        for token in tokens:
            await conn.send(LLAMACPP.token(token))
            await asyncio.sleep(0.03)
        await conn.send(LLAMACPP.finish(len(tokens)))
        await conn.end()
    else:
        await conn.respond(404, {"error": {"code": 404, "message": "not found"}})


class Cell:
    def __init__(self, messages: list[dict[str, Any]], reply: dict[str, Any]) -> None:
        self.messages = messages
        self.reply = reply

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] == kind]

    def result(self) -> dict[str, Any]:
        (result,) = self.of("execute_result")
        return dict(result["content"]["data"])


class Kernel:
    def __init__(self, km: Any, kc: Any) -> None:
        self.km, self.kc = km, kc

    def run(self, code: str, *, interrupt_when: Callable[[Cell], bool] | None = None) -> Cell:
        msg_id = self.kc.execute(code)
        cell = Cell([], {})
        interrupted = False
        for msg in iopub_until_idle(self.kc, msg_id, 90):
            cell.messages.append(msg)
            if interrupt_when is not None and not interrupted and interrupt_when(cell):
                self.km.interrupt_kernel()
                interrupted = True
        while True:  # the reply to this cell (one to an earlier request may come first)
            reply = self.kc.get_shell_msg(timeout=10)
            if reply["parent_header"].get("msg_id") == msg_id:
                cell.reply = reply["content"]
                return cell

    def ok(self, code: str) -> Cell:
        cell = self.run(code)
        assert cell.reply["status"] == "ok", (code, cell.reply, cell.of("error"))
        return cell

    def value(self, expr: str) -> Any:
        cell = self.ok(f"import json as _j; print(_j.dumps({expr}))")
        return json.loads("".join(m["content"]["text"] for m in cell.of("stream")))


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer(fake_llama_server) as srv:
        yield srv


@pytest.fixture(scope="module")
def kernel(server: FaultServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    # jupyter_client 7 (Colab's) runs its blocking calls on this thread's current event loop,
    # creating one and leaving it open if there is none: give it one, closed afterwards.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        with started_kernel(tmp_path_factory, "llm_nb notebook stack") as (km, kc):
            k = Kernel(km, kc)
            k.ok("%load_ext llm_nb")
            yield k
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture(scope="module")
def model(server: FaultServer) -> str:
    return f"llamacpp:m@{server.url.split('://')[1]}"


def expected(n: int) -> str:
    return "".join(TOKENS[:n])


def test_llm_streams_into_one_display_updated_live(kernel: Kernel, model: str) -> None:
    cell = kernel.ok(f"%%llm {model} -n 40 -o r\nHello")
    (shown,) = cell.of("display_data")[:1]
    display_id = shown["content"]["transient"]["display_id"]
    updates = cell.of("update_display_data")
    assert len(updates) >= 3, "the answer was not shown while it streamed"
    assert {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    assert updates[-1]["content"]["data"]["text/plain"] == expected(40)
    assert kernel.value("[r.status, r.text]") == ["ok", expected(40)]


def test_side_by_side_streams_both_answers(kernel: Kernel, model: str) -> None:
    other = model.replace("llamacpp:", "openai:")
    cell = kernel.ok(f"%%llm {model} {other} -n 15 -o rs\nHello")
    final = cell.of("update_display_data")[-1]["content"]["data"]
    assert final["text/plain"].count(expected(15)) == 2
    assert kernel.value("[r.status for r in rs]") == ["ok", "ok"]


def test_an_interrupt_stops_the_answer_and_keeps_what_came(kernel: Kernel, model: str) -> None:
    cell = kernel.run(
        f"%%llm {model} -n 400 -o r2\nA long one",
        interrupt_when=lambda c: len(c.of("update_display_data")) >= 3,
    )
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "StreamInterrupted"
    status, text = kernel.value("[r2.status, r2.text]")
    assert status == "cancelled" and 0 < len(text) < len(expected(400))
    assert expected(400).startswith(text)
    assert kernel.ok("40 + 2").result()["text/plain"] == "42"


def test_models_and_stats_tables(kernel: Kernel, model: str) -> None:
    kernel.ok(f"import llm_nb; llm_nb.provider({model!r})")
    models = kernel.ok("%llm_models").result()
    assert "m" in models["text/plain"] and model.split("@")[1] in models["text/plain"]
    stats = kernel.ok("%llm_stats").result()
    assert "<table" in stats["text/html"] and "TTFT (s)" in stats["text/plain"]
    # The value is the complete frame; only its display is the table of key columns.
    frame = kernel.value("[len(_), sorted(set(_.columns) & {'ttft_s', 'status'})]")
    assert frame[0] >= 4  # the single answer, both columns, the interrupted one
    assert frame[1] == ["status", "ttft_s"]


def test_the_three_panels_from_python(kernel: Kernel, model: str) -> None:
    shown = kernel.ok(f"import llm_nb\nchat = llm_nb.chat_panel({model!r}, max_tokens=12)\nchat")
    widget = "application/vnd.jupyter.widget-view+json"
    assert widget in shown.of("display_data")[0]["content"]["data"], shown.messages
    kernel.ok("chat.prompt.value = 'Hi'\nchat.send_button.click()")
    kernel.ok("await chat.wait()")
    assert kernel.value("[chat.turns[0].record.status, chat.turns[0].record.text]") == [
        "ok",
        expected(12),
    ]
    kernel.ok("chat.send('And then?')\nawait chat.wait()")
    assert kernel.value("[t.record.status for t in chat.turns]") == ["ok", "ok"]

    other = model.replace("llamacpp:", "openai:")
    kernel.ok(f"cmp = llm_nb.compare_panel([{model!r}, {other!r}], max_tokens=10)\ncmp")
    kernel.ok("await cmp.wait()\ncmp.prompt.value = 'Hi'\ncmp.run_button.click()")
    kernel.ok("await cmp.wait()")
    calls = kernel.value("[[c.record.status, c.record.text] for c in cmp.calls]")
    assert calls == [["ok", expected(10)], ["ok", expected(10)]]

    kernel.ok("picker = llm_nb.model_picker()\npicker")
    kernel.ok(f"await picker.wait()\npicker.select({model!r})")
    assert kernel.value("picker.value") == model
    # The picker's choice is now %%llm's default model.
    kernel.ok("%%llm -n 5 -o r3\nHi")
    assert kernel.value("[r3.status, r3.text, r3.host]") == [
        "ok",
        expected(5),
        model.split("@")[1],
    ]


def test_cells_stay_quick_after_all_that(kernel: Kernel) -> None:
    started = time.monotonic()
    kernel.ok("%load_ext llm_nb")  # loaded already: a no-op, not an error
    assert time.monotonic() - started < 5
