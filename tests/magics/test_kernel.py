"""The magics in a real IPython kernel (driven through jupyter_client), against llama-server.

This is what a notebook frontend sees: the IOPub messages. It checks the display cost (one
``display_data``, then ``update_display_data`` at most every ``throttle_s``), that the last
update holds the whole answer, and what a kernel interrupt does mid-stream.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

from llm_nb._safe_html import markdown_html, note_html
from tests.contract import OllamaContractServer
from tests.kernels import iopub_until_idle, started_kernel

LONG = "-x '{\"ignore_eos\": true}'"  # llama-server: generate up to -n tokens


@dataclass
class Reply:
    """One executed cell: its IOPub messages (each stamped with the kernel's send time) and
    the execute_reply content."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    content: dict[str, Any] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] == kind]

    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of("stream"))


class Kernel:
    def __init__(self, km: KernelManager, kc: BlockingKernelClient) -> None:
        self.km = km
        self.kc = kc

    def run(
        self,
        code: str,
        *,
        interrupt_when: Callable[[Reply], bool] | None = None,
        timeout: float = 60,
    ) -> Reply:
        msg_id = self.kc.execute(code)
        reply = Reply()
        interrupted = False
        for msg in iopub_until_idle(self.kc, msg_id, timeout):
            reply.messages.append(msg)
            if interrupt_when is not None and not interrupted and interrupt_when(reply):
                self.km.interrupt_kernel()
                interrupted = True
        shell = self.kc.get_shell_msg(timeout=10)
        reply.content = shell["content"]
        return reply

    def value(self, expr: str) -> Any:
        """A JSON-able expression evaluated in the kernel."""
        reply = self.run(f"import json as _j; print(_j.dumps({expr}))")
        assert reply.content["status"] == "ok", reply.content
        return json.loads(reply.stdout())


@pytest.fixture(scope="module")
def kernel(llama_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    with started_kernel(tmp_path_factory, "llm_nb tests") as (km, kc):
        k = Kernel(km, kc)
        assert k.run("%load_ext llm_nb").content["status"] == "ok"
        yield k


@pytest.fixture
def model(llama_server: Any) -> str:
    return f"llamacpp:smollm2@{llama_server.url.split('://')[1]}"


def sent_at(msg: dict[str, Any]) -> float:
    """When the kernel sent the message (header date), in seconds."""
    date = msg["header"]["date"]
    return float(date.timestamp())


def test_long_answer_costs_a_bounded_number_of_updates(kernel: Kernel, model: str) -> None:
    reply = kernel.run(f"%%llm {model} -n 120 -o r {LONG}\nWrite a long story about a dragon.")
    assert reply.content["status"] == "ok", reply.content
    first = reply.of("display_data")
    updates = reply.of("update_display_data")
    assert len(first) == 1 and updates
    display_id = first[0]["content"]["transient"]["display_id"]
    assert {u["content"]["transient"]["display_id"] for u in updates} == {display_id}

    duration = sent_at(updates[-1]) - sent_at(first[0])
    gaps = [sent_at(b) - sent_at(a) for a, b in itertools.pairwise(updates[:-1])]
    # throttle_s = 0.1: at most ten live updates a second, plus the final one.
    assert len(updates) <= 10 * duration + 2, (len(updates), duration)
    assert min(gaps, default=1.0) >= 0.09, gaps

    r = kernel.value(
        "{'text': r.text, 'status': r.status, 'n': len(r.trace.token_times_ns),"
        " 'span': (r.trace.token_times_ns[-1] - r.trace.token_times_ns[0]) / 1e9}"
    )
    assert r["status"] == "ok" and r["n"] == 120
    # Live updates do happen while the tokens stream: at least one a second (the display also
    # skips frames while rendering them would take over a quarter of the time, and a loaded
    # machine renders slowly, so the throttle's ten a second is an upper bound only).
    wanted = min(r["span"], r["n"] - 1)
    assert len(updates) - 1 >= wanted, (len(updates), r["span"])
    final = updates[-1]["content"]["data"]
    assert final["text/plain"] == r["text"]
    # The answer, then its footer: the figures, and that the token limit ended it.
    answer, footer = final["text/html"].split('<div class="llm-nb-footer"')
    assert answer == markdown_html(r["text"])
    assert re.search(r"TTFT [\d.]+ s · [\d.]+ tokens/s · cut at 120 tokens \(-n\) · cost", footer)
    print(f"\n120 tokens in {duration:.2f} s -> {len(updates)} updates")


def test_interrupt_stops_the_stream_and_keeps_the_partial_answer(
    kernel: Kernel, model: str, llama_server: Any
) -> None:
    interrupted_at: list[float] = []

    def after_three_updates(reply: Reply) -> bool:
        if len(reply.of("update_display_data")) >= 3:
            interrupted_at.append(time.monotonic())
            return True
        return False

    reply = kernel.run(
        f"%%llm {model} -n 3000 -o r2 {LONG}\nWrite a very long story about a dragon.",
        interrupt_when=after_three_updates,
    )
    stopped_in = time.monotonic() - interrupted_at[0]
    content = reply.content
    assert content["status"] == "error" and content["ename"] == "StreamInterrupted"
    r = kernel.value("{'text': r2.text, 'status': r2.status, 'n': len(r2.trace.token_times_ns)}")
    assert r["status"] == "cancelled" and 0 < r["n"] < 3000
    assert content["traceback"] == [f"\x1b[31mllm_nb: interrupted after {r['n']} tokens\x1b[0m"]
    final = reply.of("update_display_data")[-1]["content"]["data"]
    assert final["text/plain"] == r["text"] + "\n[interrupted]"
    answer, footer = final["text/html"].split('<div class="llm-nb-footer"')
    assert answer == markdown_html(r["text"]) + note_html("interrupted")
    assert f"{r['n']} output token" in footer  # '1 output token' or 'N output tokens'
    assert stopped_in < 5, stopped_in
    # The HTTP connection was closed, so the server stopped generating.
    deadline = time.monotonic() + 3
    while any(s["is_processing"] for s in httpx.get(f"{llama_server.url}/slots").json()):
        assert time.monotonic() < deadline, "llama-server is still generating"
        time.sleep(0.1)
    # The kernel is fine.
    after = kernel.run("40 + 2")
    assert after.of("execute_result")[0]["content"]["data"]["text/plain"] == "42"
    print(f"\ninterrupted after {r['n']} tokens; cell ended {stopped_in:.2f} s after interrupt")


def test_side_by_side_is_one_live_html_output(kernel: Kernel, model: str) -> None:
    reply = kernel.run(f"%%llm {model} {model} -n 30 -o rs {LONG}\nSay hello.")
    assert reply.content["status"] == "ok", reply.content
    displays = reply.of("display_data")
    assert len(displays) == 2  # the live columns, then the stats table
    columns_id = displays[0]["content"]["transient"]["display_id"]
    final = reply.of("update_display_data")[-1]["content"]
    assert final["transient"]["display_id"] == columns_id
    html = final["data"]["text/html"]
    assert html.count(" tokens/s · ") == 2 and "display:flex" in html
    table = displays[1]["content"]["data"]
    assert "TTFT (s)" in table["text/html"] and "tokens/s" in table["text/html"]
    assert "<table" in table["text/html"] and "TTFT (s)" in table["text/plain"]
    rs = kernel.value(
        "[{'text': r.text, 'send': r.trace.t_send_ns, 'end': r.trace.t_end_ns} for r in rs]"
    )
    assert max(r["send"] for r in rs) < min(r["end"] for r in rs), "calls did not overlap"
    for r in rs:
        assert r["text"] in final["data"]["text/plain"]


def test_errors_are_one_line_in_a_kernel(kernel: Kernel, model: str) -> None:
    bad = kernel.run("%%llm -t hot\nHi").content
    assert bad["status"] == "error" and bad["ename"] == "UsageError"
    assert "SystemExit" not in json.dumps(bad)
    missing = kernel.run("%%llm\nHi {undefined_name}").content
    assert missing["ename"] == "MagicError" and len(missing["traceback"]) == 1


def test_pull_shows_a_progress_widget(kernel: Kernel) -> None:
    with OllamaContractServer(None) as server:
        host = server.url.split("://")[1]
        reply = kernel.run(f"%llm_models pull ollama:tinyllama@{host}")
    assert reply.content["status"] == "ok", reply.content
    opened = [m["content"]["data"]["state"]["_model_name"] for m in reply.of("comm_open")]
    assert "IntProgressModel" in opened
    assert reply.stdout() == f"llm_nb: pulled ollama:tinyllama@{host}\n"
    assert server.violations == []
