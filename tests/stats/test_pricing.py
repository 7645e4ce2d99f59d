"""Pricing (llm_nb/_stats/_pricing.py): metered APIs and local servers."""

from __future__ import annotations

import math

import pytest

from llm_nb._stats import set_price


def test_pricing_metered_and_local() -> None:
    from llm_nb._stats._pricing import cost_usd

    assert cost_usd("openai", "api.openai.com:443", "gpt-4o-mini-2024-07-18", 1e6, 1e6) == (
        pytest.approx(0.75)
    )
    assert cost_usd("openai", "api.openai.com:443", "gpt-4o", 1e6, 0, 5e5) == pytest.approx(
        0.5 * 2.5 + 0.5 * 1.25
    )
    assert math.isnan(cost_usd("openai", "127.0.0.1:1234", "gpt-4o", 10, 10))  # LM Studio
    assert math.isnan(cost_usd("llamacpp", "127.0.0.1:8080", "smollm2", 10, 10))
    assert math.isnan(cost_usd("openai", "api.openai.com:443", "unknown-model", 10, 10))
    set_price("my-model", 1.0, 2.0, provider="ollama")
    assert cost_usd("ollama", "h:1", "my-model", 1e6, 1e6) == pytest.approx(3.0)
