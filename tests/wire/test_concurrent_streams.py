"""Concurrent streams: hundreds at once, every token checked, nothing left behind.

* 300 concurrent streams against a local firehose (tests/faults): 5 rounds on the SSE wire,
  2 on the NDJSON wire. Each stream's prompt selects the content the server sends
  (distinct tokens per stream and position, with multi-byte characters), so the client's text
  must match exactly: any lost, duplicated or reordered token, or tokens crossing between
  streams, fails. The server holds every stream after its first token until all 300 have
  arrived, so they are really open at the same time.
* File descriptors return to their baseline once the provider is closed, the server holds no
  connection and this process has no socket to it.
* Memory stays flat across rounds: no stream object survives its round (weak references),
  live ChatResponse objects do not accumulate, and RSS after round 5 is within a bound of
  RSS after round 2 (see RSS_GROWTH_MB for the bound and the measurements behind it).
* 16 concurrent streams against the real llama-server (4 slots, so requests queue there),
  each steered to a known text of its own (greedy sampling + a logit bias on one word),
  which the client must receive exactly.
"""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import Iterator

import httpx
import psutil
import pytest

from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS
from llm_nb._embedded.process.server import LlamaServer
from llm_nb._stats import Recorder
from llm_nb._stream import ChatStream
from llm_nb._types import ChatResponse
from llm_nb._wire.http import HTTPConfig
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import LlamaCppProvider
from tests.faults import LLAMACPP, OLLAMA, FaultServer, Wire, client_sockets, plays, until

pytestmark = pytest.mark.timeout(240)

N_STREAMS = 300
N_TOKENS = 24
ROUNDS = 5
#: RSS may grow this much from round 2 to the last round. Round 1 pays one-off costs (code
#: paths warmed, allocator arenas and httpx/h11 buffers sized for 300 connections); after it
#: the same 300 streams reuse the same memory. Measured on a 2-core machine with this exact
#: load (300 streams x 24 tokens, rounds 2 -> 5): no leak +0.6 MB; every ChatStream kept
#: alive (a stream leak: its httpx response, decoder state and record) +15 MB; only the
#: records kept alive +2.8 MB. 8 MB sits well above the noise and well below a stream leak.
#: Smaller leaks (records alone) hide in allocator noise, so they are caught exactly instead:
#: no ChatStream may outlive its round (weak references) and the number of live ChatResponse
#: objects must not grow.
RSS_GROWTH_MB = 8.0


def rss_mb() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def fds() -> int:
    return psutil.Process().num_fds()


def live_records() -> int:
    return sum(1 for o in gc.get_objects() if isinstance(o, ChatResponse))


@pytest.fixture
def fd_room() -> Iterator[None]:
    """300 client + 300 server sockets need more than a 1024 default soft limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize(
    ("wire", "rounds"),
    [(LLAMACPP, ROUNDS), (OLLAMA, 2)],
    ids=["llamacpp-sse", "ollama-ndjson"],
)
async def test_300_concurrent_streams_every_token_in_order(
    wire: Wire, rounds: int, rec: Recorder, fd_room: None
) -> None:
    """The SSE wire runs ROUNDS rounds and checks memory; the NDJSON wire runs two (the
    client code above the decoder is the same, and time on a shared machine is short)."""
    firehose = plays.Firehose(wire, N_TOKENS, per_write=8)
    with FaultServer(firehose) as srv:
        p = wire.provider(
            srv.url,
            http=HTTPConfig(max_connections=2 * N_STREAMS, read_s=30),
            retry=RetryPolicy(max_retries=0),
        )

        async def one(key: str, refs: list[weakref.ref[ChatStream]]) -> None:
            s = p.stream("m", key)
            refs.append(weakref.ref(s))
            r = await s.collect()
            assert r.text == "".join(plays.expected_tokens(key, N_TOKENS)), key
            assert r.status == "ok" and r.finish_reason == "stop"

        # Warm-up: the client, its pool and lazily imported code exist before the baseline.
        await asyncio.gather(*(one(f"warm-{i}", []) for i in range(4)))
        await p.aclose()
        rec.clear()
        srv.requests.clear()
        assert await until(lambda: srv.open_connections == 0)
        gc.collect()
        fd_baseline = fds()
        records_baseline = live_records()

        rss: list[float] = []
        for rnd in range(1, rounds + 1):
            firehose.reset(barrier=N_STREAMS)
            srv.peak_plays = 0  # this round's own peak (no request is in flight now)
            refs: list[weakref.ref[ChatStream]] = []
            t0 = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(*(one(f"r{rnd}-s{i:03d}", refs) for i in range(N_STREAMS))),
                60,
            )
            elapsed = time.monotonic() - t0
            rows = rec.rows()
            assert len(rows) == N_STREAMS and {r["status"] for r in rows} == {"ok"}
            assert all(r["n_chunks"] == N_TOKENS for r in rows)
            rec.clear()
            assert len(srv.requests) == N_STREAMS
            srv.requests.clear()  # the instrument's own memory, not the client's
            # All 300 were being answered at once in this round (the barrier held each after
            # its first token until all had arrived).
            assert srv.peak_plays == N_STREAMS, (rnd, srv.peak_plays)
            gc.collect()
            assert [r for r in refs if r() is not None] == [], "streams outlived their round"
            assert live_records() <= records_baseline, "records outlived their round"
            rss.append(rss_mb())
            print(f"{wire.name} round {rnd}: {elapsed:.2f} s, rss {rss[-1]:.1f} MB")

        await p.aclose()
        assert await until(lambda: srv.open_connections == 0)
        assert await until(lambda: client_sockets(srv.port) == [])
        gc.collect()
        assert await until(lambda: fds() <= fd_baseline), (fds(), fd_baseline)
        assert srv.play_errors == []
    if rounds >= 5:
        growth = rss[-1] - rss[1]
        assert growth < RSS_GROWTH_MB, f"RSS grew {growth:.1f} MB from round 2 to {rounds}: {rss}"


# -- the real llama-server -----------------------------------------------------------------

N_REAL = 16
N_REAL_TOKENS = 4
WORDS = [" apple", " river", " stone", " cloud", " green", " house", " water", " light",
         " music", " paper", " table", " horse", " bread", " glass", " night", " sugar",
         " tiger", " ocean", " chair", " dream", " field", " smile"]  # fmt: skip


async def single_token_words(url: str) -> list[tuple[str, int]]:
    """(word, token id) for the words that are one token in the server's vocabulary."""
    async with httpx.AsyncClient(base_url=url, trust_env=False) as client:
        out = []
        for w in WORDS:
            r = await client.post("/tokenize", json={"content": w})
            tokens = r.json()["tokens"]
            if len(tokens) == 1:
                out.append((w, tokens[0]))
        return out


async def test_16_concurrent_streams_real_llama_server(
    llama_server: LlamaServer, rec: Recorder
) -> None:
    """Stream i is steered (greedy sampling, a +100 logit bias on one single-token word, EOS
    ignored) to repeat its own word exactly N_REAL_TOKENS times: known content that differs
    per stream, so a lost or duplicated token, or tokens crossing between the 16 streams
    sharing the server's 4 slots, changes some stream's text. (A grammar forcing an exact
    text works too, but its per-token cost over the whole vocabulary made this test ~3x
    slower on a busy 2-core machine.)"""
    words = (await single_token_words(llama_server.url))[:N_REAL]
    assert len(words) == N_REAL, words
    fd_baseline = fds()
    # Other providers of the session (the global registry's) may hold idle keep-alive
    # connections to the same shared server: only sockets opened by this test must go.
    sockets_before = set(client_sockets(llama_server.port))
    p = LlamaCppProvider(llama_server.url, retry=RetryPolicy(max_retries=0))

    async def one(token_id: int) -> ChatResponse:
        return await p.stream(
            DEFAULT_MODEL_ALIAS,
            "Write one word.",
            max_tokens=N_REAL_TOKENS,
            temperature=0,
            extra={"logit_bias": {str(token_id): 100}, "ignore_eos": True},
        ).collect()

    results = await asyncio.wait_for(asyncio.gather(*(one(t) for _, t in words)), 200)
    for (word, _), r in zip(words, results, strict=True):
        assert r.text == word * N_REAL_TOKENS, (word, r.text)
        assert r.status == "ok" and r.finish_reason == "length"
        assert r.usage.completion_tokens == N_REAL_TOKENS
        assert len(r.trace.token_times_ns) == N_REAL_TOKENS  # one chunk per token
        assert r.model_reported == DEFAULT_MODEL_ALIAS
    rows = rec.rows()
    assert len(rows) == N_REAL and {r["status"] for r in rows} == {"ok"}
    # They overlapped: at some instant several calls were in flight together.
    spans = [(r.trace.t_send_ns or 0, r.trace.t_end_ns or 0) for r in results]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert most >= 4, most
    await p.aclose()
    assert await until(lambda: set(client_sockets(llama_server.port)) <= sockets_before)
    gc.collect()
    assert await until(lambda: fds() <= fd_baseline), (fds(), fd_baseline)
