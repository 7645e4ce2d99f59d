"""Prices per model, for ``cost_usd``. Metered models only: a local or unknown model costs
NaN (unknown), never 0, so sums over a mixed frame don't pretend local calls were free of
a cost they simply don't have.

Prices are USD per million tokens as OpenAI published them; extend or override with
:func:`set_price`. Dated snapshots (``gpt-4o-mini-2024-07-18``) fall back to their base name.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Price:
    prompt_per_m: float
    completion_per_m: float
    cached_prompt_per_m: float | None = None


_PRICES: dict[tuple[str, str], Price] = {
    ("openai", "gpt-4o"): Price(2.50, 10.00, 1.25),
    ("openai", "gpt-4o-mini"): Price(0.15, 0.60, 0.075),
    ("openai", "gpt-4.1"): Price(2.00, 8.00, 0.50),
    ("openai", "gpt-4.1-mini"): Price(0.40, 1.60, 0.10),
    ("openai", "gpt-4.1-nano"): Price(0.10, 0.40, 0.025),
    ("openai", "o3-mini"): Price(1.10, 4.40, 0.55),
    ("openai", "o4-mini"): Price(1.10, 4.40, 0.275),
}
_LOCK = threading.Lock()
_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")
METERED_HOSTS = frozenset({"api.openai.com:443"})


def set_price(
    model: str,
    prompt_per_m: float,
    completion_per_m: float,
    *,
    provider: str = "openai",
    cached_prompt_per_m: float | None = None,
) -> None:
    """Add or override a price (USD per million tokens). For a metered OpenAI-compatible
    service at another host, register it with that provider name and the model name."""
    with _LOCK:
        _PRICES[(provider, model)] = Price(prompt_per_m, completion_per_m, cached_prompt_per_m)


def price_of(provider: str, model: str) -> Price | None:
    with _LOCK:
        found = _PRICES.get((provider, model))
        if found is None:
            found = _PRICES.get((provider, _SNAPSHOT.sub("", model)))
        return found


def cost_usd(
    provider: str,
    host: str,
    model: str,
    prompt_tokens: float,
    completion_tokens: float,
    cached_tokens: float = math.nan,
) -> float:
    # An OpenAI-compatible local server (LM Studio, vLLM...) is not metered even if a model
    # name matches an OpenAI one.
    if provider == "openai" and host not in METERED_HOSTS:
        return math.nan
    price = price_of(provider, model)
    if price is None or math.isnan(prompt_tokens) or math.isnan(completion_tokens):
        return math.nan
    cached = (
        0.0 if math.isnan(cached_tokens) or price.cached_prompt_per_m is None else cached_tokens
    )
    return (
        (prompt_tokens - cached) * price.prompt_per_m
        + cached * (price.cached_prompt_per_m or 0.0)
        + completion_tokens * price.completion_per_m
    ) / 1e6
