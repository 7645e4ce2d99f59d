"""One call's record turned into one row of docs/METRICS.md columns (a plain dict, no pandas).

Every duration is a difference of ``time.perf_counter_ns`` stamps taken in this process;
``started_at`` is the call's only wall-clock value. Missing values are NaN, never 0, so a
mean over a column never mixes "unknown" with "zero".
"""

from __future__ import annotations

import hashlib
import itertools
import math
import operator
from collections.abc import Mapping
from typing import Any

from .._types import ChatResponse
from ._pricing import cost_usd

NAN = math.nan

#: The per-call columns, in docs/METRICS.md order.
COLUMNS: tuple[str, ...] = (
    "call_id", "run_id", "provider", "host", "model", "model_reported", "stream", "warmup",
    "status", "error_type", "finish_reason", "finish_reason_raw", "started_at",
    "queue_s", "ttfb_s", "ttft_s", "ttfo_s", "e2e_s", "decode_s", "tpot_s",
    "gap_p50_s", "gap_p95_s", "gap_max_s", "n_chunks",
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "token_source",
    "output_tps",
    "srv_prompt_n", "srv_prompt_ms", "srv_cache_n", "srv_decode_n", "srv_decode_ms",
    "srv_load_ms", "srv_total_ms", "srv_output_tps", "client_overhead_ms",
    "cost_usd",
    "cpu_pct", "rss_mb", "gpu_util_pct", "gpu_mem_mb", "gpu_power_w", "gpu_energy_j",
    "chars", "text_sha256",
)  # fmt: skip

HARDWARE_COLUMNS = ("cpu_pct", "rss_mb", "gpu_util_pct", "gpu_mem_mb", "gpu_power_w",
                    "gpu_energy_j")  # fmt: skip


def _s(later: int | None, earlier: int | None) -> float:
    if later is None or earlier is None:
        return NAN
    return (later - earlier) / 1e9


def _num(value: Any) -> float:
    return NAN if value is None else float(value)


def _percentile(sorted_values: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), without numpy."""
    if not sorted_values:
        return NAN
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def call_row(
    record: ChatResponse,
    *,
    hardware: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The docs/METRICS.md row for one call, priced from the pricing table."""
    t = record.trace
    tokens = t.token_times_ns
    send = t.t_send_ns
    last = tokens[-1] if tokens else None
    # A call that produced no token ends when it ended (error, or an empty answer).
    e2e = _s(last if last is not None else t.t_end_ns, send)
    decode = _s(last, t.t_first_token_ns)
    # Integer ns differences, sorted, then only three of them turned into seconds: about half
    # the cost of a float per gap (this runs once per call, over every token's time).
    gaps = sorted(map(operator.sub, itertools.islice(tokens, 1, None), tokens))

    usage = record.usage
    timings = record.timings
    completion: float
    if usage.completion_tokens is not None:
        token_source = "server_usage"
        prompt, completion = _num(usage.prompt_tokens), float(usage.completion_tokens)
    elif timings is not None and timings.decode_n is not None:
        token_source = "server_timings"
        prompt, completion = _num(timings.prompt_n), float(timings.decode_n)
    elif usage.prompt_tokens is not None or usage.total_tokens is not None:
        # The server counted, just not the answer: unknown, never a count of chunks.
        token_source = "server_usage"
        prompt, completion = _num(usage.prompt_tokens), NAN
    else:
        token_source = "chunk_count"
        prompt, completion = NAN, float(len(tokens))

    tpot = decode / (completion - 1) if completion >= 2 and not math.isnan(decode) else NAN
    output_tps = completion / decode if decode and decode > 0 else NAN

    srv = timings
    srv_decode_n = _num(srv.decode_n) if srv else NAN
    srv_decode_ms = _num(srv.decode_ms) if srv else NAN
    srv_prompt_ms = _num(srv.prompt_ms) if srv else NAN
    srv_load_ms = _num(srv.load_ms) if srv else NAN
    srv_output_tps = (
        srv_decode_n / srv_decode_ms * 1000 if srv_decode_ms and srv_decode_ms > 0 else NAN
    )
    overhead = NAN
    # Measured to the chunk that carried the timings, not to the last token: the server's
    # decode time runs to its final step (an end-of-generation token sends no text), so the
    # last token-carrying chunk can precede the end of that time, by a whole decode step or
    # more when other requests share the server. The server starts after the send and
    # reports before its last chunk, so this difference cannot be negative.
    done = _s(t.t_done_ns, send)
    if not (math.isnan(done) or math.isnan(srv_prompt_ms) or math.isnan(srv_decode_ms)):
        # llama-server reports no load time: its model is loaded before the request counts,
        # so a missing load is 0 here; Ollama reports load_duration when it loaded.
        load = 0.0 if math.isnan(srv_load_ms) else srv_load_ms
        overhead = done * 1000 - (load + srv_prompt_ms + srv_decode_ms)

    text = record.text
    hw = hardware or {}
    row: dict[str, Any] = {
        "call_id": record.call_id,
        "run_id": record.run_id,
        "provider": record.provider,
        "host": record.host,
        "model": record.model,
        "model_reported": record.model_reported,
        "stream": record.stream,
        "warmup": record.warmup,
        "status": record.status,
        "error_type": type(record.error).__name__ if record.error is not None else None,
        "finish_reason": record.finish_reason,
        "finish_reason_raw": record.finish_reason_raw,
        "started_at": t.started_at,
        "queue_s": _s(send, t.t_queued_ns) if t.t_queued_ns is not None else 0.0,
        "ttfb_s": _s(t.t_headers_ns, send),
        "ttft_s": _s(t.t_first_token_ns, send),
        "ttfo_s": _s(t.t_first_answer_ns, send),
        "e2e_s": e2e,
        "decode_s": decode,
        "tpot_s": tpot,
        "gap_p50_s": _percentile(gaps, 0.5) / 1e9,
        "gap_p95_s": _percentile(gaps, 0.95) / 1e9,
        "gap_max_s": gaps[-1] / 1e9 if gaps else NAN,
        "n_chunks": len(tokens),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "reasoning_tokens": _num(usage.reasoning_tokens),
        "cached_tokens": _num(
            usage.cached_tokens
            if usage.cached_tokens is not None
            else (srv.cache_n if srv else None)
        ),
        "token_source": token_source,
        "output_tps": output_tps,
        "srv_prompt_n": _num(srv.prompt_n) if srv else NAN,
        "srv_prompt_ms": srv_prompt_ms,
        "srv_cache_n": _num(srv.cache_n) if srv else NAN,
        "srv_decode_n": srv_decode_n,
        "srv_decode_ms": srv_decode_ms,
        "srv_load_ms": srv_load_ms,
        "srv_total_ms": _num(srv.total_ms) if srv else NAN,
        "srv_output_tps": srv_output_tps,
        "client_overhead_ms": overhead,
        "cost_usd": cost_usd(
            record.provider,
            record.host,
            record.model,
            prompt,
            completion,
            _num(usage.cached_tokens),
        ),
        **{k: float(hw.get(k, NAN)) for k in HARDWARE_COLUMNS},
        "chars": len(text),
        "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    return row
