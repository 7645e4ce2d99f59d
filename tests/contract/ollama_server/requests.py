"""What a request asks for, read the way Ollama reads it: a JSON object, ``keep_alive`` (a Go
duration or seconds), ``think``, ``options`` (types checked as api.Options.FromMap does) and
``format``. A bad value raises :class:`~.wire.APIError` with Ollama's wording."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

from .wire import JSON, APIError

DEFAULT_KEEP_ALIVE = timedelta(minutes=5)  # OLLAMA_KEEP_ALIVE's default
# Ollama maps a negative keep_alive to time.Duration(math.MaxInt64): about 292 years.
FOREVER = timedelta(microseconds=(2**63 - 1) // 1000)

# Ollama options -> llama-server request fields. Load-time options (num_ctx, num_gpu, num_thread,
# use_mmap ...) are not forwarded: llama-server fixed them at start, where Ollama would reload.
RUNTIME_OPTIONS = {
    "num_predict": "n_predict",
    "num_keep": "n_keep",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "typical_p": "typical_p",
    "seed": "seed",
    "stop": "stop",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "mirostat": "mirostat",
    "mirostat_tau": "mirostat_tau",
    "mirostat_eta": "mirostat_eta",
}
INT_OPTIONS = frozenset(
    {
        "num_predict",
        "num_keep",
        "top_k",
        "seed",
        "repeat_last_n",
        "mirostat",
        "num_ctx",
        "num_batch",
        "num_gpu",
        "main_gpu",
        "num_thread",
    }
)
_BOOL_OPTIONS = frozenset({"use_mmap", "use_mlock", "numa", "low_vram", "vocab_only", "f16_kv"})
_GO_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def require_object(body: Any) -> JSON:
    if not isinstance(body, dict):
        raise APIError(400, "request body must be a JSON object")
    return body


def parse_keep_alive(value: Any) -> timedelta:
    """api.Duration: a number is seconds, a string is a Go duration, negative means forever."""
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise APIError(400, f"unsupported type: {type(value).__name__}")
    if isinstance(value, int | float):
        return FOREVER if value < 0 else timedelta(seconds=int(value))
    if isinstance(value, str):
        seconds = _parse_go_duration(value)
        return FOREVER if seconds < 0 else timedelta(seconds=seconds)
    raise APIError(400, f"unsupported type: {type(value).__name__}")


def _parse_go_duration(text: str) -> float:
    if text in ("0", "+0", "-0"):
        return 0.0
    match = re.fullmatch(r"([+-]?)((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+", text)
    if not match:
        raise APIError(400, f'time: invalid duration "{text}"')
    total = sum(
        float(number) * _GO_DURATION_UNITS[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    )
    return -total if match.group(1) == "-" else total


def parse_think(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in ("high", "medium", "low"):
        return True
    allowed = '"high", "medium", "low", true, or false'
    raise APIError(400, f"invalid think value: {json.dumps(value)} (must be {allowed})")


def check_options(options: Any) -> JSON:
    """api.Options.FromMap: unknown keys are ignored (with a warning), wrong types fail."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise APIError(400, "options must be an object")
    for key, value in options.items():
        if value is None:
            continue
        if key in INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise APIError(500, f'option "{key}" must be of type integer')
        if key in _BOOL_OPTIONS and not isinstance(value, bool):
            raise APIError(500, f'option "{key}" must be of type boolean')
        if key == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise APIError(500, f'option "{key}" must be of an array of strings')
        if (
            key in RUNTIME_OPTIONS
            and key not in INT_OPTIONS
            and key != "stop"
            and (isinstance(value, bool) or not isinstance(value, int | float))
        ):
            raise APIError(500, f'option "{key}" must be of type float32')
    return options


def response_format(fmt: Any) -> JSON | None:
    """Ollama's ``format`` ("json" or a JSON schema) as llama-server's response_format."""
    if fmt in (None, ""):
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"schema": fmt}}
    raise APIError(400, 'invalid format: expected "json" or a valid JSON schema')
