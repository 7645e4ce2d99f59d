"""Fidelity: llm_nb's client-side timings against the ones a real llama-server reports.

About 20 streamed calls (prompt cache off, so every call evaluates its prompt; ``ignore_eos``
so every call decodes the same number of tokens) to a llama-server; for each, the docs/METRICS.md
row's ``decode_s`` against the server's ``predicted_ms`` and ``ttft_s`` against its
``prompt_ms``. Decode: the client sees n-1 gaps between n tokens, the server times n decode
steps, so the ratio is also given per token. TTFT is always longer than the prompt evaluation
(it adds HTTP, tokenising, scheduling and the first token's sampling); how much longer is the
figure.

    python -m benchmarks.fidelity --url URL --calls N
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from ._common import Row, Section, Sizes, emit, median, run_child
from .llama import ALIAS, llama_server

TOKENS = 64
PROMPT = (
    "You are reading a short passage about rivers. Rivers begin as small streams in the "
    "hills, gather water from rain and melting snow, and flow down towards the sea. Along the "
    "way they carve valleys, carry sand and stones, and give water to towns and farms. "
    "Summarise the passage in one sentence, then list three things rivers carry. Call {i}."
)


async def _child(url: str, calls: int) -> dict[str, Any]:
    from llm_nb import LlamaCppProvider
    from llm_nb._stats import call_row

    provider = LlamaCppProvider(url)
    rows = []
    try:
        extra = {"ignore_eos": True, "cache_prompt": False, "temperature": 0, "seed": 1}
        for i in range(calls + 1):
            stream = provider.stream(ALIAS, PROMPT.format(i=i), max_tokens=TOKENS, extra=extra)
            record = await stream.collect()
            if i == 0:
                continue  # the first call after start-up pays one-off costs
            row = call_row(record)
            rows.append(
                {
                    k: row[k]
                    for k in (
                        "ttft_s",
                        "decode_s",
                        "n_chunks",
                        "srv_prompt_ms",
                        "srv_prompt_n",
                        "srv_decode_ms",
                        "srv_decode_n",
                        "completion_tokens",
                    )
                }
            )
    finally:
        await provider.aclose()
    return {"rows": rows}


def measure(sizes: Sizes, llama: bool) -> Section:
    section = Section("fidelity")
    if not llama:
        return section
    try:
        with llama_server(parallel=1) as url:
            args = ["-m", "benchmarks.fidelity", "--url", url, "--calls", str(sizes.fidelity_calls)]
            result = run_child(args, timeout=600)
    except Exception as exc:
        result = {"error": f"not available: {type(exc).__name__}: {str(exc)[:200]}"}
    if "error" in result:
        section.rows.append(
            Row(
                "fidelity",
                "client decode_s / server predicted_ms",
                None,
                None,
                "llama-server timings",
                "ratio",
                target="≈ 1 (info)",
                note=result["error"],
            )
        )
        return section
    rows = result["rows"]
    section.raw = result
    decode = [r["decode_s"] * 1e3 / r["srv_decode_ms"] for r in rows]
    per_token = [
        (r["decode_s"] * 1e3 / (r["n_chunks"] - 1)) / (r["srv_decode_ms"] / r["srv_decode_n"])
        for r in rows
        if r["n_chunks"] > 1 and r["srv_decode_n"]
    ]
    ttft = [r["ttft_s"] * 1e3 / r["srv_prompt_ms"] for r in rows]
    gap = [r["ttft_s"] * 1e3 - r["srv_prompt_ms"] for r in rows]
    n = len(rows)
    section.rows += [
        Row(
            "fidelity",
            f"decode_s vs server predicted_ms (median of {n} calls, ms)",
            median([r["decode_s"] * 1e3 for r in rows]),
            median([r["srv_decode_ms"] for r in rows]),
            "llama-server predicted_ms",
            "ms",
            target="≈ 1 (info)",
            ratio=median(decode),
            note=f"per token (n-1 gaps vs n steps): {median(per_token):.3f}",
        ),
        Row(
            "fidelity",
            f"ttft_s vs server prompt_ms (median of {n} calls, ms)",
            median([r["ttft_s"] * 1e3 for r in rows]),
            median([r["srv_prompt_ms"] for r in rows]),
            "llama-server prompt_ms",
            "ms",
            target="≥ 1 (info)",
            ratio=median(ttft),
            note=f"ttft - prompt_ms: {median(gap):.1f} ms; prompt "
            f"{median([r['srv_prompt_n'] for r in rows]):.0f} tokens",
        ),
    ]
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    if not args.url.startswith("http://127."):
        parser.error("benchmarks only talk to loopback servers")
    emit(asyncio.run(_child(args.url, args.calls)))


if __name__ == "__main__":
    main()
