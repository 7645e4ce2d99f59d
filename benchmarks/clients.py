"""The streaming clients being compared, each run alone in a subprocess.

    python -m benchmarks.clients --client NAME --wire sse|ndjson --url URL --chunks N
                                 [--streams S] [--calls C] [--warmup-chunks W] [--profile FILE]

Every client does the same work a user's loop does: send one chat request, take each content
delta out of the stream and keep it. The process warms up with one short stream (connection
open, lazy imports done), then measures ``S`` concurrent streams of ``N`` tokens each (with
``--calls C``, each of the ``S`` asks for ``C`` answers one after another) and prints wall
time, this process's CPU time (all threads: llm_nb's recorder and hardware sampler included
when recording is on) and what arrived.

Wires: ``sse`` (OpenAI), ``ndjson`` (Ollama), ``llamacpp`` (OpenAI SSE from a real
llama-server, read by llm_nb's LlamaCppProvider). Clients: ``httpx`` (the floor:
``aiter_lines`` + ``json.loads``), ``llm_nb``, ``openai`` (AsyncOpenAI), ``ollama``
(AsyncClient.chat), ``litellm`` (acompletion). ``llm_nb`` records calls unless
``LLM_NB_RECORD=0`` is in the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ._common import emit

MESSAGES = [{"role": "user", "content": "Tell me a story."}]
#: (content chunks, characters) of one answer.
Counts = tuple[int, int]
One = Callable[[int], Awaitable[Counts]]
Closer = Callable[[], Awaitable[None]]


def _httpx_floor(url: str, wire: str, model: str, extra: dict[str, Any]) -> tuple[One, Closer]:
    import httpx

    client = httpx.AsyncClient(timeout=300.0, trust_env=False)

    async def sse(n: int) -> Counts:
        body = {
            "model": model,
            "messages": MESSAGES,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": n,
            **extra,
        }
        parts: list[str] = []
        async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                for choice in json.loads(data).get("choices") or ():
                    content = choice["delta"].get("content")
                    if content:
                        parts.append(content)
        return len(parts), len("".join(parts))

    async def ndjson(n: int) -> Counts:
        body = {
            "model": model,
            "messages": MESSAGES,
            "stream": True,
            "options": {"num_predict": n},
            **extra,
        }
        parts: list[str] = []
        async with client.stream("POST", f"{url}/api/chat", json=body) as r:
            r.raise_for_status()
            async for line in r.aiter_lines():
                if not line:
                    continue
                obj = json.loads(line)
                content = obj["message"]["content"]
                if content:
                    parts.append(content)
                if obj.get("done"):
                    break
        return len(parts), len("".join(parts))

    return (ndjson if wire == "ndjson" else sse), client.aclose


def _llm_nb(url: str, wire: str, model: str, extra: dict[str, Any]) -> tuple[One, Closer]:
    from llm_nb import LlamaCppProvider, OllamaProvider, OpenAIProvider, TextDelta

    provider = (
        OllamaProvider(url)
        if wire == "ndjson"
        else LlamaCppProvider(url)
        if wire == "llamacpp"
        else OpenAIProvider(f"{url}/v1")
    )

    async def one(n: int) -> Counts:
        count = 0
        stream = provider.stream(model, MESSAGES, max_tokens=n, extra=extra)
        async for delta in stream:
            if isinstance(delta, TextDelta):
                count += 1
        return count, len(stream.response.text)

    return one, provider.aclose


def _openai(url: str, wire: str, model: str, extra: dict[str, Any]) -> tuple[One, Closer]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0)

    async def one(n: int) -> Counts:
        parts: list[str] = []
        stream = await client.chat.completions.create(
            model=model,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            max_tokens=n,
            stream_options={"include_usage": True},
            extra_body=extra or None,
        )
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    parts.append(choice.delta.content)
        return len(parts), len("".join(parts))

    return one, client.close


def _ollama(url: str, wire: str, model: str, extra: dict[str, Any]) -> tuple[One, Closer]:
    from ollama import AsyncClient

    client = AsyncClient(host=url)

    async def one(n: int) -> Counts:
        parts: list[str] = []
        stream = await client.chat(
            model=model, messages=MESSAGES, stream=True, options={"num_predict": n}
        )
        async for part in stream:
            if part.message.content:
                parts.append(part.message.content)
        return len(parts), len("".join(parts))

    async def close() -> None:
        await client._client.aclose()

    return one, close


def _litellm(url: str, wire: str, model: str, extra: dict[str, Any]) -> tuple[One, Closer]:
    import litellm

    if wire != "ndjson":
        kwargs: dict[str, Any] = {
            "model": f"openai/{model}",
            "api_base": f"{url}/v1",
            "api_key": "bench",
            "stream_options": {"include_usage": True},
        }
    else:
        kwargs = {"model": f"ollama_chat/{model}", "api_base": url}

    async def one(n: int) -> Counts:
        parts: list[str] = []
        response = await litellm.acompletion(messages=MESSAGES, stream=True, max_tokens=n, **kwargs)
        async for chunk in response:
            for choice in chunk.choices:
                content = choice.delta.content
                if content:
                    parts.append(content)
        return len(parts), len("".join(parts))

    async def close() -> None:
        return None

    return one, close


CLIENTS: dict[str, Callable[[str, str, str, dict[str, Any]], tuple[One, Closer]]] = {
    "httpx": _httpx_floor,
    "llm_nb": _llm_nb,
    "openai": _openai,
    "ollama": _ollama,
    "litellm": _litellm,
}


async def measure(
    client: str,
    wire: str,
    url: str,
    chunks: int,
    streams: int = 1,
    warmup_chunks: int = 200,
    model: str = "firehose",
    extra: dict[str, Any] | None = None,
    profile: str | None = None,
    calls: int = 1,
) -> dict[str, Any]:
    """Warm up, then time ``streams`` concurrent workers, each asking for ``calls`` answers
    of ``chunks`` tokens one after another."""
    one, close = CLIENTS[client](url, wire, model, dict(extra or {}))
    try:
        if warmup_chunks:
            await asyncio.gather(*(one(warmup_chunks) for _ in range(min(streams, 8))))
        gc.collect()
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        c0, t0 = time.process_time(), time.perf_counter()
        per_worker = await asyncio.gather(*(_in_turn(one, chunks, calls) for _ in range(streams)))
        t1, c1 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
    finally:
        await close()
    counts = [c for worker in per_worker for c in worker]
    received = sum(c for c, _ in counts)
    return {
        "client": client,
        "wire": wire,
        "streams": streams,
        "calls": calls,
        "chunks": chunks,
        "received": received,
        "chars": sum(c for _, c in counts),
        "wall_s": t1 - t0,
        "cpu_s": c1 - c0,
    }


async def _in_turn(one: One, chunks: int, calls: int) -> list[Counts]:
    return [await one(chunks) for _ in range(calls)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", choices=sorted(CLIENTS), required=True)
    parser.add_argument(
        "--wire",
        choices=("sse", "ndjson", "llamacpp"),
        default="sse",
        help="llamacpp: SSE from a real llama-server (llm_nb uses its LlamaCppProvider)",
    )
    parser.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8123")
    parser.add_argument("--chunks", type=int, default=100_000, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=1, help="concurrent streams")
    parser.add_argument("--calls", type=int, default=1, help="answers per stream, in turn")
    parser.add_argument("--warmup-chunks", type=int, default=200)
    parser.add_argument("--model", default="firehose")
    parser.add_argument("--extra", type=json.loads, default={}, help="JSON request fields")
    parser.add_argument("--profile", help="write a cProfile of the timed part here")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        parser.error("benchmarks only talk to loopback servers")
    result = asyncio.run(
        measure(
            args.client,
            args.wire,
            args.url,
            args.chunks,
            args.streams,
            args.warmup_chunks,
            args.model,
            args.extra,
            args.profile,
            args.calls,
        )
    )
    emit(result)


if __name__ == "__main__":
    main()
