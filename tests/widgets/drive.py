"""Helpers that drive the panels in the widget tests: waiting for tokens or idle slots,
counting a widget's changes and their threads, and a real kernel driven like a browser."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from typing import Any

import httpx

from llm_nb._session import registry
from llm_nb._widgets import ChatPanel
from tests.kernels import iopub_until_idle

LONG = {"ignore_eos": True}  # llama-server: keep generating up to max_tokens


def host_of(url: str) -> str:
    return url.split("://")[1]


def forget(host: str) -> None:
    """Drop a test server's providers from the registry, so later listings do not try it."""
    reg = registry()
    with reg._lock:
        for key in [k for k, p in reg._providers.items() if p.host == host]:
            del reg._providers[key]


async def streaming(record: Any, chars: int, within_s: float = 30.0) -> None:
    """Until ``record()`` (a panel's current call) holds ``chars`` characters of answer."""
    deadline = time.monotonic() + within_s
    while len(record().text) < chars:
        assert time.monotonic() < deadline, "no tokens arrived"
        await asyncio.sleep(0.02)


async def slots_idle(url: str, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            slots = (await client.get(f"{url}/slots")).json()
            if not any(s["is_processing"] for s in slots):
                return True
            await asyncio.sleep(0.05)
    return False


class Changes:
    """Counts a trait's changes and the threads they came from."""

    def __init__(self, widget: Any, name: str) -> None:
        self.count = 0
        self.threads: set[int] = set()
        widget.observe(self._seen, name)

    def _seen(self, change: Any) -> None:
        self.count += 1
        self.threads.add(threading.get_ident())


class AnswerChanges(Changes):
    """Counts the changes of every answer a chat panel adds from now on (each turn gets a new
    ``AnswerView``, made inside ``send``), and the threads they came from."""

    def __init__(self, panel: ChatPanel) -> None:
        self.count = 0
        self.threads = set()
        panel.history.observe(self._added, "children")

    def _added(self, change: Any) -> None:
        for box in change["new"][len(change["old"]) :]:
            box.children[2].observe(self._seen, "value")  # prompt, label, answer, figures


class KernelSession:
    """A kernel driven like a browser: cells, and widget messages on the shell channel."""

    def __init__(self, km: Any, kc: Any) -> None:
        self.km = km
        self.kc = kc

    def run(self, code: str, timeout: float = 60) -> list[dict[str, Any]]:
        msg_id = self.kc.execute(code)
        messages = self._until_idle(msg_id, timeout)
        reply = self.kc.get_shell_msg(timeout=10)
        assert reply["content"]["status"] == "ok", reply["content"]
        return messages

    def value(self, expr: str) -> Any:
        messages = self.run(f"import json as _j; print(_j.dumps({expr}))")
        out = "".join(m["content"]["text"] for m in messages if m["msg_type"] == "stream")
        return json.loads(out)

    def widget_message(self, comm_id: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Send what a browser sends for a widget event; the IOPub messages until idle."""
        msg = self.kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.kc.shell_channel.send(msg)
        return self._until_idle(msg["header"]["msg_id"], 30)

    def _until_idle(self, msg_id: str, timeout: float) -> list[dict[str, Any]]:
        return list(iopub_until_idle(self.kc, msg_id, timeout))

    def collect(self, until: Any, timeout: float = 30) -> list[dict[str, Any]]:
        """IOPub messages from any request until ``until(messages)`` holds."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not until(messages):
            try:
                messages.append(
                    self.kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
                )
            except queue.Empty:
                raise AssertionError(f"condition not met within {timeout} s") from None
        return messages


def click() -> dict[str, Any]:
    return {"method": "custom", "content": {"event": "click"}}


def answer_updates(comm_id: str) -> Any:
    def of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            m for m in messages
            if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == comm_id
            and "value" in m["content"]["data"].get("state", {})
        ]  # fmt: skip

    return of
