"""Per-chunk client cost: one firehose answer of N tokens read by each client.

For both wires (OpenAI SSE, Ollama NDJSON) every client runs in its own subprocess, rounds
rotate the order, and the median over rounds is reported: chunks per second (wall) and this
client process's CPU time per chunk. CPU per chunk is the figure the targets are checked on:
on a shared two-core machine it moves far less with other load than wall time does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._common import Row, Section, Sizes, child_env, firehose, have, median, prime, run_child

TARGET_FLOOR = 1.3


@dataclass(frozen=True)
class Client:
    label: str
    client: str
    env: tuple[tuple[str, str], ...] = ()
    module: str = ""


def clients_for(wire: str, peers: bool) -> list[Client]:
    out = [
        Client("httpx aiter_lines + json.loads", "httpx"),
        Client("llm_nb, recording on", "llm_nb"),
        Client("llm_nb, recording off", "llm_nb", (("LLM_NB_RECORD", "0"),)),
    ]
    if peers:
        official = Client("openai AsyncOpenAI", "openai", module="openai")
        if wire == "ndjson":
            official = Client("ollama AsyncClient", "ollama", module="ollama")
        out += [official, Client("litellm acompletion", "litellm", module="litellm")]
    return out


def measure(sizes: Sizes, peers: bool, profile_dir: Path | None = None) -> Section:
    section = Section("chunks")
    with firehose() as url:
        for wire in ("sse", "ndjson"):
            prime(url, wire, sizes.chunks)
            clients = clients_for(wire, peers)
            runs: dict[str, list[dict[str, float]]] = {c.label: [] for c in clients}
            errors: dict[str, str] = {}
            for rep in range(sizes.chunk_reps):
                # Rotate the order so slow drifts in machine load hit every client alike.
                for c in clients[rep % len(clients) :] + clients[: rep % len(clients)]:
                    if c.label in errors:
                        continue
                    if c.module and not have(c.module):
                        errors[c.label] = "not available (not installed)"
                        continue
                    args = [
                        "-m",
                        "benchmarks.clients",
                        "--client",
                        c.client,
                        "--wire",
                        wire,
                        "--url",
                        url,
                        "--chunks",
                        str(sizes.chunks),
                        "--warmup-chunks",
                        str(min(2000, sizes.chunks)),
                    ]
                    if profile_dir is not None and c.client == "llm_nb" and rep == 0:
                        name = f"llm_nb-{wire}-{'off' if c.env else 'on'}.prof"
                        args += ["--profile", str(profile_dir / name)]
                    result = run_child(args, env=child_env(**dict(c.env)), timeout=900)
                    if "error" in result:
                        errors[c.label] = result["error"]
                    elif result["received"] != sizes.chunks:
                        errors[c.label] = f"received {result['received']} of {sizes.chunks}"
                    else:
                        runs[c.label].append(result)
            section.raw[wire] = {"runs": runs, "errors": errors}
            _rows(section, wire, clients, runs, errors, sizes.chunks)
    return section


def _rows(
    section: Section,
    wire: str,
    clients: list[Client],
    runs: dict[str, list[dict[str, float]]],
    errors: dict[str, str],
    n: int,
) -> None:
    shape = "SSE, OpenAI chunks" if wire == "sse" else "NDJSON, Ollama chunks"

    def us(label: str) -> float | None:
        rs = runs.get(label) or []
        return median([r["cpu_s"] / n * 1e6 for r in rs]) if rs else None

    def rate(label: str) -> float | None:
        rs = runs.get(label) or []
        return median([n / r["wall_s"] for r in rs]) if rs else None

    floor = clients[0].label
    for c in clients:
        section.raw.setdefault("summary", {})[f"{wire}/{c.label}"] = {
            "cpu_us_per_chunk": us(c.label),
            "chunks_per_s": rate(c.label),
            "error": errors.get(c.label),
        }
    base_us, base_rate = us(floor), rate(floor)
    for c in clients[1:3]:
        mine = us(c.label)
        section.rows.append(
            Row(
                "chunks",
                f"CPU per chunk, {shape}, {n:,} chunks: {c.label}",
                mine,
                base_us,
                floor,
                "µs",
                target=f"≤ {TARGET_FLOOR}x floor",
                met=None if mine is None or base_us is None else mine <= TARGET_FLOOR * base_us,
                note=_rates(rate(c.label), base_rate) + _err(errors, c.label, floor),
            )
        )
    ours = clients[1].label
    for c in clients[3:]:
        theirs = us(c.label)
        mine = us(ours)
        official = c.client in ("openai", "ollama")
        section.rows.append(
            Row(
                "chunks",
                f"CPU per chunk, {shape}: llm_nb (recording on) vs {c.label}",
                mine,
                theirs,
                c.label,
                "µs",
                target="< 1 (faster)" if official else "< 1 (info)",
                met=(None if mine is None or theirs is None or not official else mine < theirs),
                note=_rates(rate(ours), rate(c.label)) + _err(errors, c.label, ours),
            )
        )


def _rates(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None:
        return ""
    return f"chunks/s: {mine:,.0f} vs {theirs:,.0f}"


def _err(errors: dict[str, str], *labels: str) -> str:
    return "".join(f"; {label}: {errors[label]}" for label in labels if label in errors)
