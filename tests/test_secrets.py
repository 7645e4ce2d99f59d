"""Secrets: the canary API key must never show up anywhere a user or a log could see it.

The canary (conftest's ``canary_api_key``) is configured on an OpenAI, a llama.cpp and an
Ollama provider. Then every kind of error is provoked: 401 (a real llama-server started with
the canary as its key, called with a wrong one; fault servers answering 401), servers that
echo the key back in their error (OpenAI style ``Incorrect API key provided: sk-canar****0813``,
the whole key, a plain-text body, an error event inside a stream, a malformed frame),
connection refused, read timeouts, a dropped connection. Then these are searched for the key,
its OpenAI-style masked form and distinctive pieces of it:

repr/str of providers and sync wrappers; repr/str/message/formatted traceback (with its
chained causes) of every error and of the partial record it carries; every stream record;
the recorder's rows; the stats DataFrame (string, CSV, JSON); the SQLite store's raw bytes
(and its WAL); every log record at DEBUG from every logger (httpx and httpcore included);
captured stdout/stderr; the real llama-server's log file, command line and repr.

That the key really went over the wire is checked too (the fault server saw it in the
Authorization header), so its absence everywhere else means something. tests/secret_scan.py
scans the files the whole session left behind, once it has ended.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from llm_nb import sync
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS
from llm_nb._embedded.process.server import LlamaServer, free_port
from llm_nb._errors import AuthenticationError, LLMError
from llm_nb._session import default_session
from llm_nb._stats import Recorder, _frames
from llm_nb._stats._store import Store
from llm_nb._wire.http import HTTPConfig
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from llm_nb.providers.base import Provider
from tests.faults import WIRES, Conn, FaultServer, Request, Wire, plays

pytestmark = pytest.mark.timeout(120)

NO_RETRY = RetryPolicy(max_retries=0)


def needles(key: str) -> dict[str, re.Pattern[str]]:
    """What counts as a leak, by name: the key, its first 8 or last 8 characters, a
    12-character piece of its middle, and an OpenAI-style mask (``sk-canar****...0813``).
    Failure messages name these and redact the key, so a failing test does not spread it
    into CI logs and the JUnit report (which tests/secret_scan.py scans too)."""
    mid = len(key) // 2
    return {
        "whole key": re.compile(re.escape(key)),
        "first 8": re.compile(re.escape(key[:8])),
        "last 8": re.compile(re.escape(key[-8:])),
        "middle 12": re.compile(re.escape(key[mid - 6 : mid + 6])),
        "masked": re.compile(r"\*{3,}" + re.escape(key[-4:])),
    }


def leaks(text: str, key: str) -> list[str]:
    return [name for name, p in needles(key).items() if p.search(text)]


def redact(text: str, key: str) -> str:
    for p in needles(key).values():
        text = p.sub("<KEY>", text)
    return text


class Surfaces:
    """Every text a user or a log could see, labelled."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, label: str, text: Any) -> None:
        self.items.append((label, text if isinstance(text, str) else repr(text)))

    def add_error(self, label: str, exc: BaseException) -> None:
        self.add(f"{label} repr", repr(exc))
        self.add(f"{label} str", str(exc))
        self.add(f"{label} traceback", "".join(traceback.format_exception(exc)))
        cause = exc.__cause__ or exc.__context__
        while cause is not None:
            self.add(f"{label} cause", f"{cause!r} {cause}")
            cause = cause.__cause__ or cause.__context__
        if isinstance(exc, LLMError):
            self.add(f"{label} message", exc.message)
            if exc.partial is not None:
                self.add(f"{label} partial", exc.partial)

    def add_provider(self, label: str, p: Provider) -> None:
        self.add(f"{label} repr", repr(p))
        self.add(f"{label} str", str(p))
        self.add(f"{label} sync repr", repr(sync(p)))
        self.add(f"{label} vars", {k: v for k, v in vars(p).items() if k != "_clients"})

    def assert_clean(self, key: str) -> None:
        assert self.items
        found = [(label, leaks(text, key), text) for label, text in self.items]
        bad = [(label, kinds, redact(text, key)[:300]) for label, kinds, text in found if kinds]
        assert not bad, f"the key leaked into {len(bad)} place(s): {bad}"


@pytest.fixture
def store_rec(tmp_path: Path) -> Iterator[Recorder]:
    """A recorder with an on-disk store, next to the default one (which stays on, so the
    session's store gets these rows too and the end-of-session scan covers it)."""
    r = Recorder(Store(tmp_path / "calls.sqlite"), None)
    observers = default_session().observers
    observers.add(r)
    try:
        yield r
    finally:
        observers.remove(r)


def add_records(s: Surfaces, rec: Recorder, tmp_path: Path) -> None:
    rows = rec.rows()
    assert rows
    for row in rows:
        s.add(f"row {row['call_id']}", row)
        s.add(f"text {row['call_id']}", rec.text(row["call_id"]))
    df = _frames.frame(rows)
    s.add("frame", df.to_string())
    s.add("frame csv", df.to_csv())
    s.add("frame json", df.to_json(date_format="iso"))
    assert rec.store is not None
    db = rec.store.path
    history = _frames.history(db)
    s.add("history csv", history.to_csv())
    rec.store.close()
    for f in sorted(db.parent.glob(db.name + "*")):  # the database, its -wal and -shm
        s.add(f"store file {f.name}", f.read_bytes().decode("latin-1"))


def add_logs(s: Surfaces, caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged: is DEBUG capture on?"
    names = {r.name.split(".")[0] for r in caplog.records}
    assert "httpx" in names and "httpcore" in names, names  # the HTTP stack did log
    fmt = logging.Formatter("%(name)s %(levelname)s %(message)s %(exc_text)s")
    for r in caplog.records:
        s.add(f"log {r.name}", fmt.format(r))
        s.add(f"log args {r.name}", repr(r.args))
    s.add("log text", caplog.text)


# -- servers that echo the key --------------------------------------------------------------


def echoing(wire: Wire, key: str) -> Any:
    """A fault server play that answers the scenario named by the prompt."""
    masked = key[:8] + "*" * (len(key) - 12) + key[-4:]
    openai_401 = (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )

    async def play(req: Request, conn: Conn) -> None:
        if req.path != wire.path:
            # Model listing, health, version...: a 200 that is not JSON, or a 401, both
            # echoing the key.
            if req.path.endswith(("/models", "/ps")):
                await conn.respond(200, f"welcome {key}, this is not JSON")
            else:
                body = wire.error_body(401, f"invalid key {key}", "authentication_error")
                await conn.respond(401, body, {"content-type": "application/json"})
            return
        scenario = req.prompt()
        if scenario == "401-masked":
            body = wire.error_body(401, openai_401, "invalid_request_error")
            await conn.respond(401, body, {"content-type": "application/json"})
        elif scenario == "401-full":
            body = wire.error_body(401, f"invalid key {key}", "authentication_error")
            await conn.respond(401, body, {"content-type": "application/json"})
        elif scenario == "500-text":
            await conn.respond(500, f"upstream refused Authorization: Bearer {key}\n")
        elif scenario == "200-text":
            await conn.respond(200, f"welcome {key}, this is not JSON")
        elif scenario == "stream-error":
            await conn.head(200, plays.stream_head(wire))
            await conn.send(wire.first() + wire.token("a") + wire.token("b"))
            await conn.send(wire.error(f"quota exceeded for key {key} (key {masked})", 429))
            await conn.end()
        elif scenario == "stream-malformed":
            await conn.head(200, plays.stream_head(wire))
            await conn.send(wire.first() + wire.token("a"))
            if wire.name == "ollama":
                await conn.send(f'{{"error": "bad key {key}"\n'.encode())
            else:
                await conn.send(f'data: {{"error": "bad key {key}"\n\n'.encode())
            await conn.end()
        elif scenario == "stream-text":
            await conn.head(200, plays.stream_head(wire))
            await conn.send(wire.first() + wire.token("a"))
            prefix = b"" if wire.name == "ollama" else b"data: "
            await conn.send(prefix + f"Invalid API key {key}\n\n".encode())
            await conn.end()
        elif scenario == "drop":
            await conn.head(200, plays.stream_head(wire))
            await conn.send(wire.first() + wire.token("a"))
            await asyncio.sleep(0.02)
            conn.hang_up()
        elif scenario == "hang":
            await conn.hold(5)
        else:
            await plays.answer(wire)(req, conn)

    return play


STREAM_SCENARIOS = [
    "401-masked",
    "401-full",
    "500-text",
    "200-text",
    "stream-error",
    "stream-malformed",
    "stream-text",
    "drop",
    "hang",
    "ok",
]


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
async def test_canary_never_leaks_from_fault_servers(
    wire: Wire,
    canary_api_key: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    store_rec: Recorder,
    tmp_path: Path,
) -> None:
    key = canary_api_key
    caplog.set_level(logging.DEBUG)  # the root: every logger, httpx and httpcore included
    s = Surfaces()
    outcomes: dict[str, str] = {}
    with FaultServer(echoing(wire, key)) as srv:
        p = wire.provider(srv.url, api_key=key, retry=NO_RETRY)
        impatient = wire.provider(
            srv.url, api_key=key, retry=NO_RETRY, http=HTTPConfig(start_s=0.3)
        )
        s.add_provider("provider", p)
        for scenario in STREAM_SCENARIOS:
            for streamed in (True, False):
                # Only the "hang" scenario gets the short read timeout.
                q = impatient if scenario == "hang" else p
                st = q.stream("m", scenario) if streamed else None
                try:
                    if st is not None:
                        await st.collect()
                    else:
                        await q.chat("m", scenario)
                    outcomes[f"{scenario}/{streamed}"] = "ok"
                except LLMError as exc:
                    outcomes[f"{scenario}/{streamed}"] = type(exc).__name__
                    s.add_error(f"{scenario} stream={streamed}", exc)
                if st is not None:
                    s.add(f"{scenario} record", st.response)
        # Non-chat calls take the same error paths.
        for call in ("models", "health", "version", "props"):
            fn = getattr(p, call, None)
            if fn is None:
                continue
            try:
                s.add(f"{call} result", await fn())
                outcomes[call] = "ok"
            except LLMError as exc:
                outcomes[call] = type(exc).__name__
                s.add_error(call, exc)
        await p.aclose()
        await impatient.aclose()
        # The key did go over the wire: its absence elsewhere is meaningful.
        sent = any(r.headers.get("authorization") == f"Bearer {key}" for r in srv.requests)
        assert sent, "the provider did not send its key"
    # ...and connection failures.
    dead = wire.provider(f"http://127.0.0.1:{free_port()}", api_key=key, retry=NO_RETRY)
    with pytest.raises(LLMError) as info:
        await dead.stream("m", "hi").collect()
    s.add_error("refused", info.value)
    s.add_provider("dead provider", dead)
    await dead.aclose()

    assert outcomes["401-full/True"] == outcomes["401-masked/True"] == "AuthenticationError"
    # An SSE error event carries its code (429); Ollama's error line is text only.
    expected = "ServerError" if wire.name == "ollama" else "RateLimitError"
    assert outcomes["stream-error/True"] == expected
    assert outcomes["hang/True"] == "APITimeoutError"
    assert outcomes["drop/True"] == "APIConnectionError"
    assert outcomes["ok/True"] == outcomes["ok/False"] == "ok"
    assert outcomes["models"] in ("ProtocolError", "AuthenticationError")
    add_records(s, store_rec, tmp_path)
    add_logs(s, caplog)
    out, err = capsys.readouterr()
    s.add("stdout", out)
    s.add("stderr", err)
    s.assert_clean(key)


@pytest.mark.doubles
def test_needles_would_catch_each_leak_shape(canary_api_key: str) -> None:
    """The detector itself: each way a key shows up in the wild is found."""
    key = canary_api_key
    masked = key[:8] + "*" * 24 + key[-4:]
    middle = key[len(key) // 2 - 6 : len(key) // 2 + 6]
    shapes = [key, f"Bearer {key}", masked, f"...{key[-8:]}", key[:8], f"x{middle}y"]
    missed = [i for i, text in enumerate(shapes) if not leaks(text, key)]
    assert missed == [], "leak shapes the detector misses (by index)"
    clean = leaks("sk-proj-other-key [redacted] 0813 call c1-0813abcd", key)
    assert clean == []
    redacted = redact(f"a {key} b {masked}", key)
    assert leaks(redacted, key) == [] and redacted.startswith("a <KEY> b")


@pytest.mark.parametrize("wire", WIRES, ids=lambda w: w.name)
async def test_unusual_key_echoed_in_a_malformed_frame(wire: Wire) -> None:
    key = "canarykey0123456789abcdef0123456789"  # no sk-/key-/token- prefix to match on
    with FaultServer(echoing(wire, key)) as srv:
        p = wire.provider(srv.url, api_key=key, retry=NO_RETRY)
        with pytest.raises(LLMError) as info:
            await p.stream("m", "stream-malformed").collect()
        await p.aclose()
    s = Surfaces()
    s.add_error("malformed", info.value)
    s.assert_clean(key)


# -- a real llama-server with the canary as its key -----------------------------------------


@pytest.fixture
def keyed_server(
    llama_server_bin: Path, smollm2_gguf: Path, canary_api_key: str, tmp_path: Path
) -> Iterator[LlamaServer]:
    server = LlamaServer(
        llama_server_bin,
        model=smollm2_gguf,
        alias=DEFAULT_MODEL_ALIAS,
        ctx_size=1024,
        parallel=1,
        threads=2,
        api_key=canary_api_key,
        log_path=tmp_path / "keyed-server.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_canary_never_leaks_with_real_llama_server(
    keyed_server: LlamaServer,
    canary_api_key: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    store_rec: Recorder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = canary_api_key
    wrong = "sk-wrong-0123456789abcdef0123456789abcdef"
    monkeypatch.delenv("LLAMA_API_KEY", raising=False)
    caplog.set_level(logging.DEBUG)
    s = Surfaces()
    s.add("server repr", repr(keyed_server))
    s.add("server command", " ".join(keyed_server.command()))
    assert keyed_server.pid is not None
    s.add("server cmdline", " ".join(psutil.Process(keyed_server.pid).cmdline()))

    good = LlamaCppProvider(keyed_server.url, api_key=key, retry=NO_RETRY)
    s.add_provider("good", good)
    st = good.stream(DEFAULT_MODEL_ALIAS, "Say hi.", max_tokens=8, temperature=0)
    r = await st.collect()
    assert r.status == "ok" and r.text  # the key works
    s.add("ok record", r)
    s.add("models", await good.models())
    s.add("health", await good.health())

    for label, api_key in (("wrong key", wrong), ("no key", None)):
        p = LlamaCppProvider(keyed_server.url, api_key=api_key, retry=NO_RETRY)
        s.add_provider(label, p)
        with pytest.raises(AuthenticationError) as info:
            await p.stream(DEFAULT_MODEL_ALIAS, "hi", max_tokens=4).collect()
        assert info.value.status_code == 401
        s.add_error(f"{label} stream", info.value)
        with pytest.raises(AuthenticationError) as info:
            await p.chat(DEFAULT_MODEL_ALIAS, "hi", max_tokens=4)
        s.add_error(f"{label} chat", info.value)
        with pytest.raises(AuthenticationError) as info:
            await p.models()
        s.add_error(f"{label} models", info.value)
        s.add(f"{label} health", await p.health())
        await p.aclose()

    # A read timeout on the keyed server: a 1 ms read timeout cannot be met.
    slow = LlamaCppProvider(
        keyed_server.url, api_key=key, retry=NO_RETRY, http=HTTPConfig(start_s=0.001, read_s=0.001)
    )
    with pytest.raises(LLMError) as info:
        await slow.stream(DEFAULT_MODEL_ALIAS, "Tell a story.", max_tokens=64).collect()
    s.add_error("timeout", info.value)
    await slow.aclose()
    await good.aclose()

    s.add("log tail", keyed_server.log_tail(200))
    keyed_server.stop()  # flush and close its log before reading it
    log = keyed_server.log_path
    assert log is not None and log.stat().st_size > 0
    s.add("server log file", log.read_bytes().decode("latin-1"))
    add_records(s, store_rec, tmp_path)
    add_logs(s, caplog)
    out, err = capsys.readouterr()
    s.add("stdout", out)
    s.add("stderr", err)
    s.assert_clean(key)
    s.assert_clean(wrong)
