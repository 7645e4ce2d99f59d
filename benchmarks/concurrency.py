"""Concurrency: N streams at once, llm_nb's total throughput vs a plain asyncio + httpx loop.

Against the firehose (N = 1, 4, 16, 64; a fixed total of chunks split over the N streams) the
client's CPU is the limit, so this shows what llm_nb's per-chunk work costs at scale. Against
a real llama-server started with ``-np 4`` (N = 1, 2, 4; ``ignore_eos`` so every stream is
exactly the asked length) the server is the limit, and the question is whether the client
takes CPU the server needed (two cores are shared by both).
"""

from __future__ import annotations

import json

from ._common import Row, Section, Sizes, child_env, firehose, median, prime, run_child
from .llama import ALIAS, llama_server

TARGET = 0.9


def _pair(
    url: str,
    wire: str,
    streams: int,
    chunks: int,
    reps: int,
    warmup: int,
    model: str = "firehose",
    extra: dict[str, object] | None = None,
    calls: int = 1,
    env: dict[str, str] | None = None,
) -> dict[str, list[float] | str]:
    """Throughput (chunks/s, all streams together) and CPU seconds per client, alternating who
    goes first; ``<client>_cpu`` holds the CPU figures."""
    out: dict[str, list[float] | str] = {
        "httpx": [],
        "llm_nb": [],
        "httpx_cpu": [],
        "llm_nb_cpu": [],
    }
    for rep in range(reps):
        order = ("httpx", "llm_nb") if rep % 2 == 0 else ("llm_nb", "httpx")
        for client in order:
            runs = out[client]
            if isinstance(runs, str):
                continue
            args = [
                "-m",
                "benchmarks.clients",
                "--client",
                client,
                "--wire",
                wire,
                "--url",
                url,
                "--chunks",
                str(chunks),
                "--streams",
                str(streams),
                "--warmup-chunks",
                str(warmup),
                "--model",
                model,
                "--calls",
                str(calls),
            ]
            if extra:
                args += ["--extra", json.dumps(extra)]
            result = run_child(args, timeout=600, env=env)
            expected = streams * calls * chunks
            if "error" in result:
                out[client] = result["error"]
            elif result["received"] != expected:
                out[client] = f"received {result['received']} of {expected} chunks"
            else:
                runs.append(result["received"] / result["wall_s"])
                cpu = out[f"{client}_cpu"]
                assert isinstance(cpu, list)
                cpu.append(result["cpu_s"])
    return out


def paired_ratio(mine: list[float], base: list[float]) -> float:
    """The median of each rep's llm_nb / httpx ratio. The two runs of a rep are back to back,
    so a slow spell on the shared machine hits both; medians taken apart mix one client's good
    spell with the other's bad one (seen moving a ratio by 0.1 between identical runs)."""
    return median([m / b for m, b in zip(mine, base, strict=True)])


def _row(label: str, n: int, result: dict[str, list[float] | str], note: str = "") -> Row:
    mine, base = result["llm_nb"], result["httpx"]
    ours = median(mine) if isinstance(mine, list) and mine else None
    theirs = median(base) if isinstance(base, list) and base else None
    ratio = None
    if isinstance(mine, list) and isinstance(base, list) and len(mine) == len(base) and mine:
        ratio = paired_ratio(mine, base)
        cpu_mine, cpu_base = result["llm_nb_cpu"], result["httpx_cpu"]
        assert isinstance(cpu_mine, list) and isinstance(cpu_base, list)
        note = "; ".join(
            filter(
                None,
                [
                    note,
                    f"CPU llm_nb / httpx {paired_ratio(cpu_mine, cpu_base):.2f}",
                    f"median of {len(mine)} paired runs",
                ],
            )
        )
    errors = "; ".join(f"{k}: {v}" for k, v in result.items() if isinstance(v, str))
    return Row(
        "concurrency",
        f"total throughput, {label}, N = {n}",
        ours,
        theirs,
        "asyncio.gather of httpx streams",
        "chunks/s",
        target=f"≥ {TARGET} (within 10%)",
        ratio=ratio,
        met=None if ratio is None else ratio >= TARGET,
        note="; ".join(filter(None, [note, errors])),
    )


def _per_call_row(
    n: int, calls: int, tokens: int, recording: str, result: dict[str, list[float] | str]
) -> Row:
    cpu_mine, cpu_base = result["llm_nb_cpu"], result["httpx_cpu"]
    thr_mine, thr_base = result["llm_nb"], result["httpx"]
    ours = theirs = ratio = None
    notes = [f"{k}: {v}" for k, v in result.items() if isinstance(v, str)]
    if (
        isinstance(cpu_mine, list) and isinstance(cpu_base, list) and isinstance(thr_mine, list)
        and isinstance(thr_base, list) and cpu_mine and len(cpu_mine) == len(cpu_base)
    ):  # fmt: skip
        per_call_ms = 1000 / (n * calls)  # a run's CPU seconds -> ms per call
        ours, theirs = median(cpu_mine) * per_call_ms, median(cpu_base) * per_call_ms
        ratio = paired_ratio(cpu_mine, cpu_base)
        notes[:0] = [
            f"median of {len(cpu_mine)} paired runs",
            f"throughput llm_nb / httpx {paired_ratio(thr_mine, thr_base):.2f}",
        ]
    return Row(
        "concurrency",
        f"CPU per call, {n} at a time, {calls} answers each of {tokens} tokens, firehose (SSE): "
        f"llm_nb, recording {recording}",
        ours,
        theirs,
        "asyncio.gather of httpx streams",
        "ms",
        target="(info)",
        ratio=ratio,
        note="; ".join(notes),
    )


def measure(sizes: Sizes, llama: bool) -> Section:
    section = Section("concurrency")
    with firehose() as url:
        for n in sizes.concurrency:
            per = max(sizes.concurrency_total_chunks // n, 1)
            prime(url, "sse", per)
            result = _pair(url, "sse", n, per, sizes.concurrency_reps, min(per, 200))
            section.raw[f"firehose/N={n}"] = result
            section.rows.append(_row("firehose (SSE)", n, result, f"{per:,} chunks per stream"))
        # Many short answers at once: here what each call costs besides its tokens (the
        # connection pool, building the request, the record) is most of the work.
        n, calls, tokens = sizes.short_streams, sizes.short_calls, sizes.short_tokens
        prime(url, "sse", tokens)
        for label, env in (("on", None), ("off", child_env(LLM_NB_RECORD="0"))):
            reps = sizes.concurrency_reps
            result = _pair(url, "sse", n, tokens, reps, tokens, calls=calls, env=env)
            section.raw[f"firehose/short/recording {label}"] = result
            section.rows.append(_per_call_row(n, calls, tokens, label, result))
    if not llama:
        return section
    try:
        with llama_server(parallel=4) as url:
            extra = {"ignore_eos": True, "temperature": 0, "seed": 1}
            for n in sizes.llama_concurrency:
                result = _pair(
                    url, "llamacpp", n, sizes.llama_tokens, sizes.llama_reps, 4, ALIAS, extra
                )
                section.raw[f"llama-server/N={n}"] = result
                section.rows.append(
                    _row(
                        "llama-server -np 4, SmolLM2-135M",
                        n,
                        result,
                        f"{sizes.llama_tokens} tokens per stream",
                    )
                )
    except Exception as exc:  # no binary, no model, or it would not start: say so, go on
        section.rows.append(
            Row(
                "concurrency",
                "total throughput, llama-server -np 4",
                None,
                None,
                "asyncio.gather of httpx streams",
                "tokens/s",
                target=f"≥ {TARGET}",
                note=f"not available: {type(exc).__name__}: {str(exc)[:200]}",
            )
        )
    return section
