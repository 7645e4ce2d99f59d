"""Why an answer ended, in one vocabulary: ``stop`` · ``length`` · ``tool_calls`` ·
``content_filter``.

Servers name the same ends differently: Together and TGI say ``eos`` / ``eos_token``, Mistral
``model_length``, Anthropic-compatible servers ``end_turn`` / ``max_tokens`` / ``tool_use`` /
``model_context_window_exceeded``, older OpenAI ``function_call``, Gemini ``SAFETY``, Cohere
``COMPLETE`` / ``ERROR_TOXIC``, llama.cpp's native API ``limit`` / ``word``. The record keeps
the server's own value next to the normalized one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._types import ChatResponse

_NORMAL: dict[str, str] = {
    **dict.fromkeys(
        (
            "stop", "eos", "eos_token", "end_turn", "stop_sequence", "end", "complete",
            "completed", "word", "stopped_eos", "stopped_word", "finished",
        ),
        "stop",
    ),
    **dict.fromkeys(
        (
            "length", "max_tokens", "model_length", "max_length", "limit", "stopped_limit",
            "max_output_tokens", "token_limit", "model_context_window_exceeded",
        ),
        "length",
    ),
    **dict.fromkeys(
        ("tool_calls", "function_call", "tool_use", "tool_call", "tools"), "tool_calls"
    ),
    **dict.fromkeys(
        (
            "content_filter", "content_filtered", "safety", "recitation", "blocklist",
            "prohibited_content", "spii", "refusal", "guardrail_intervened", "image_safety",
            "error_toxic",
        ),
        "content_filter",
    ),
}  # fmt: skip


def normalize_finish(raw: object) -> str | None:
    """The normalized finish reason for a server's value; None for none, or for a value that
    names no answer end (``error``, ``abort``, Ollama's ``load``), which stays in the raw
    column."""
    if not isinstance(raw, str) or not raw:
        return None
    return _NORMAL.get(raw.lower())


def record_finish(record: ChatResponse, raw: object) -> None:
    """Set the record's finish reason from the server's value, keeping that value too."""
    if raw is None or raw == "":
        return
    record.finish_reason_raw = str(raw)
    record.finish_reason = normalize_finish(raw)
