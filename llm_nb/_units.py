"""How a figure reads wherever a person sees it: one name, one unit, three significant figures.

A footer under an answer ("TTFT 1.26 s · 43.2 tokens/s · 21 output tokens") and a table's
header and cell ("TTFT (s)" over "1.26") are written from the same names and the same number
format, so the one figure never reads as "1.26 s" in one place and "1,260 ms" in another.
Durations are in seconds, as docs/METRICS.md's columns are.

Pure Python (no pandas): the footers use it for every answer.
"""

from __future__ import annotations

import math

#: docs/METRICS.md column -> (name, unit). A figure with a unit reads "name value unit" and
#: heads a table as "name (unit)"; one without (its name says what it counts) reads
#: "value name" and heads a table as its name.
FIGURES: dict[str, tuple[str, str]] = {
    "ttft_s": ("TTFT", "s"),
    "e2e_s": ("E2E", "s"),
    "output_tps": ("tokens/s", ""),
    "completion_tokens": ("output tokens", ""),
    "cost_usd": ("cost", "USD"),
}
MISSING = "—"


def sig3(value: float) -> str:
    """Three significant figures: from 100 up as a whole number with thousands separators
    (6,390, never 6.39e+03); below, trailing zeros kept (1.50), so a column reads at one
    precision."""
    value = float(value)
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 2:
        return f"{round(value, 2 - magnitude):,.0f}"
    return f"{value:#.3g}".rstrip(".")


def count(value: float) -> str:
    """A count, stored as a float so that it can be NaN: 41, not 41.0."""
    return f"{round(float(value)):,}"


def header(name: str) -> str:
    """A table's header for ``name``: "TTFT (s)", "tokens/s"."""
    label, unit = FIGURES[name]
    return f"{label} ({unit})" if unit else label


def phrase(name: str, value: float) -> str:
    """``value`` of ``name`` as a footer says it: "TTFT 1.26 s", "21 output tokens"; its value
    "—" when missing ("TTFT —")."""
    label, unit = FIGURES[name]
    if math.isnan(value):
        return f"{label} {MISSING}" if unit else f"{MISSING} {label}"
    if name == "completion_tokens":
        return f"{count(value)} {tokens(value, label)}"
    return f"{label} {sig3(value)} {unit}" if unit else f"{sig3(value)} {label}"


def tokens(value: float, noun: str = "tokens") -> str:
    """``noun`` ("tokens", "output tokens") in the singular for one: "1 output token"."""
    return noun.removesuffix("s") if round(value) == 1 else noun
