"""Time to first token added by the client, on loopback, against a raw socket client.

The firehose answers with the headers and the first token in its first write, so everything
between sending the request and seeing the first content byte is client plus kernel. In one
subprocess, requests alternate between

* a raw blocking socket (TCP_NODELAY, keep-alive, a prebuilt request): send → first recv that
  holds the first token; the floor;
* llm_nb: its own ``ttft_s`` (``t_first_token - t_send``), and what a caller sees (``stream()``
  called → first delta out of the iterator);
* the official ``openai`` client when installed (``create()`` called → first content chunk).

    python -m benchmarks.ttft --url URL --requests N [--openai]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from typing import Any

from ._common import Row, Section, Sizes, emit, firehose, have, median, run_child
from .firehose import FIRST_TOKEN

TOKENS = 8
WARMUP = 10
BODY = {
    "model": "firehose",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_tokens": TOKENS,
}
FIRST = b'"content":' + json.dumps(FIRST_TOKEN).encode()


class RawClient:
    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = json.dumps(BODY).encode()
        self._request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (host.encode(), port, len(body), body)
        )

    def once(self) -> int:
        """ns from send to the first content byte; reads the whole answer."""
        sock = self._sock
        t0 = time.perf_counter_ns()
        sock.sendall(self._request)
        buf = b""
        first = 0
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("firehose closed the connection")
            buf += data
            if not first and FIRST in buf:
                first = time.perf_counter_ns()
            if buf.endswith(b"0\r\n\r\n"):
                return first - t0

    def close(self) -> None:
        self._sock.close()


async def _child(url: str, requests: int, with_openai: bool) -> dict[str, Any]:
    from llm_nb import OpenAIProvider

    host, port = url.removeprefix("http://").rsplit(":", 1)
    raw = RawClient(host, int(port))
    provider = OpenAIProvider(f"{url}/v1")
    out: dict[str, list[int]] = {
        "raw": [],
        "httpx": [],
        "llm_nb": [],
        "llm_nb_caller": [],
        "openai": [],
    }
    import httpx

    plain = httpx.AsyncClient(timeout=60.0, trust_env=False)

    async def bare() -> None:
        t0 = time.perf_counter_ns()
        seen = 0
        async with plain.stream("POST", f"{url}/v1/chat/completions", json=BODY) as r:
            async for line in r.aiter_lines():
                if not seen and line.startswith("data: "):
                    delta = (json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {})
                    if delta.get("content"):
                        seen = time.perf_counter_ns()
        out["httpx"].append(seen - t0)

    async def ours() -> None:
        t0 = time.perf_counter_ns()
        stream = provider.stream("firehose", BODY["messages"], max_tokens=TOKENS)
        seen = 0
        async for _ in stream:
            if not seen:
                seen = time.perf_counter_ns()
        trace = stream.response.trace
        assert trace.t_first_token_ns is not None and trace.t_send_ns is not None
        out["llm_nb"].append(trace.t_first_token_ns - trace.t_send_ns)
        out["llm_nb_caller"].append(seen - t0)

    client: Any = None
    if with_openai:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)

    async def theirs() -> None:
        t0 = time.perf_counter_ns()
        stream = await client.chat.completions.create(
            model="firehose",
            messages=BODY["messages"],
            stream=True,
            max_tokens=TOKENS,
            stream_options={"include_usage": True},
        )
        seen = 0
        async for chunk in stream:
            if not seen and chunk.choices and chunk.choices[0].delta.content:
                seen = time.perf_counter_ns()
        out["openai"].append(seen - t0)

    async def floor() -> None:
        out["raw"].append(raw.once())

    steps = [floor, bare, ours] + ([theirs] if with_openai else [])
    try:
        for i in range(requests + WARMUP):
            for step in steps[i % len(steps) :] + steps[: i % len(steps)]:
                await step()
            if i + 1 == WARMUP:
                for v in out.values():
                    v.clear()
    finally:
        raw.close()
        await plain.aclose()
        await provider.aclose()
        if client is not None:
            await client.close()
    return {k: v for k, v in out.items() if v}


def measure(sizes: Sizes, peers: bool) -> Section:
    section = Section("ttft")
    with firehose() as url:
        args = ["-m", "benchmarks.ttft", "--url", url, "--requests", str(sizes.ttft_requests)]
        if peers and have("openai"):
            args.append("--openai")
        result = run_child(args, timeout=600)
    if "error" in result:
        section.rows.append(
            Row(
                "ttft",
                "TTFT added on loopback",
                None,
                None,
                "raw socket",
                "ms",
                target="< 1 ms added",
                note=result["error"],
            )
        )
        return section
    section.raw = result
    ms = {k: median(v) / 1e6 for k, v in result.items()}
    raw = ms["raw"]
    for key, what in (
        ("llm_nb", "llm_nb ttft_s (send → first token)"),
        ("llm_nb_caller", "llm_nb as a caller sees it (stream() → first delta)"),
    ):
        added = ms[key] - raw
        section.rows.append(
            Row(
                "ttft",
                f"TTFT on loopback, median of {len(result[key])}: {what}",
                ms[key],
                raw,
                "raw socket send → first content byte",
                "ms",
                target="< 1 ms added",
                met=added < 1.0,
                note=f"added {added * 1e3:.0f} µs",
            )
        )
    if "openai" in ms:
        added = ms["openai"] - raw
        section.rows.append(
            Row(
                "ttft",
                "TTFT on loopback: openai AsyncOpenAI (create() → first content chunk)",
                ms["llm_nb_caller"],
                ms["openai"],
                "openai client",
                "ms",
                target="(info)",
                note=f"openai adds {added * 1e3:.0f} µs over the raw socket",
            )
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--openai", action="store_true", help="also time the openai client")
    args = parser.parse_args()
    if not args.url.startswith("http://127."):
        parser.error("benchmarks only talk to loopback servers")
    emit(asyncio.run(_child(args.url, args.requests, args.openai)))


if __name__ == "__main__":
    main()
