"""What the tests of the Ollama doubles ask with: tools to offer, a user message, and reading
or waiting on what a client gets back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
}


TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


def user(content: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": content}]


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll ``condition`` while the server thread catches up."""
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def drain(stream: AsyncIterator[Any], into: list[Any] | None = None) -> list[Any]:
    """Read a client stream to the end, keeping what arrived before any error."""
    received = [] if into is None else into
    async for part in stream:
        received.append(part)
    return received
