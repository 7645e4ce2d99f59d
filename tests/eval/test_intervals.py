"""The intervals behind "do these two contenders differ?": the distribution-free interval of
a median, its coverage on skewed data, and the paired comparison of two contenders."""

from __future__ import annotations

import math
import random
from typing import Any

import pandas as pd
import pytest

from llm_nb import InvalidOptionError
from llm_nb._eval._intervals import compare, median_interval


def _coverage(n: int, k: int) -> float:
    """1 - 2 P(B <= k-1), B ~ Binomial(n, 1/2), the long way."""
    return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n


def test_median_interval_uses_the_order_statistics_it_can_afford() -> None:
    found = median_interval(range(1, 10))  # 1..9
    assert (found.n, found.median, found.low, found.high) == (9, 5, 2, 8)
    assert found.coverage == pytest.approx(_coverage(9, 2))
    assert _coverage(9, 3) < 0.95 <= found.coverage  # the next narrower one falls short
    six = median_interval([3.0, 1.0, 2.0, 6.0, 5.0, 4.0])
    assert (six.median, six.low, six.high) == (3.5, 1.0, 6.0)
    assert six.coverage == pytest.approx(1 - 2 / 64)
    # Five values cannot bound the median at 95% ([min, max] covers it 93.75% of the time):
    # no interval, rather than a narrower one than the data allow.
    five = median_interval([1, 2, 3, 4, 5])
    assert five.median == 3 and math.isnan(five.low) and math.isnan(five.high)
    assert median_interval([1, 2, 3, 4, 5], confidence=0.9).low == 1
    assert math.isnan(median_interval([]).median)
    assert median_interval([math.nan, 1, 2, 3, 4, 5, 6]).n == 6


def test_median_interval_for_many_values_and_bad_confidence() -> None:
    found = median_interval(float(i) for i in range(5000))
    assert found.low < found.median < found.high and 0.95 <= found.coverage < 0.96
    # about median ± 1.96 · sqrt(n)/2 ranks
    assert found.high - found.low == pytest.approx(2 * 1.96 * math.sqrt(5000) / 2, abs=3)
    for bad in (0, 1, 1.5, "0.95", True):
        with pytest.raises(InvalidOptionError, match="confidence"):
            median_interval([1.0], confidence=bad)  # type: ignore[arg-type]


def test_median_interval_covers_the_median_of_skewed_timings() -> None:
    """On exponential 'latencies' (skewed, like real ones) the interval holds the true median
    at least as often as it says, where a mean ± 2 standard errors would not aim at it."""
    rng = random.Random(7)
    true_median = math.log(2)
    hits = trials = 0
    for _ in range(2000):
        found = median_interval([rng.expovariate(1.0) for _ in range(15)])
        trials += 1
        hits += found.low <= true_median <= found.high
    assert hits / trials >= 0.95 - 0.012  # nominal coverage here is 96.5%


def _frame(a: list[float], b: list[float], **extra: Any) -> pd.DataFrame:
    rows = []
    for model_id, values in (("a", a), ("b", b)):
        for i, v in enumerate(values):
            rows.append(
                {
                    "prompt": f"p{i % 4}",
                    "repeat": i // 4,
                    "model_id": model_id,
                    "status": "ok",
                    "ttft_s": v,
                    "e2e_s": v * 2,
                    "tpot_s": v / 10,
                    "output_tps": 10 / v,
                    **extra,
                }
            )
    return pd.DataFrame(rows)


def test_compare_pairs_cells_and_says_whether_they_differ() -> None:
    rng = random.Random(3)
    base = [rng.uniform(0.1, 2.0) for _ in range(12)]  # prompts differ a lot
    slower = [v + 0.05 + rng.uniform(-0.01, 0.01) for v in base]  # b is 50 ms slower
    table = compare(_frame(base, slower), "a", "b", metrics=["ttft_s"])
    row = table.loc["ttft_s"]
    assert row["n_pairs"] == 12 and row["verdict"] == "differ"
    assert row["ci_low"] <= 0.05 <= row["ci_high"] and row["ci_low"] > 0
    assert row["diff_p50"] == pytest.approx(0.05, abs=0.01)
    # Unpaired, the two sets of calls overlap almost entirely: their own intervals could
    # not tell them apart, the pairs can.
    own_a, own_b = median_interval(base), median_interval(slower)
    assert own_a.high > own_b.low

    # Half the pairs a little faster, half a little slower: no difference to find.
    noisy = [v + (-1) ** i * rng.uniform(0.01, 0.05) for i, v in enumerate(base)]
    same = compare(_frame(base, noisy), "a", "b").loc["ttft_s"]
    assert same["verdict"] == "within noise" and same["ci_low"] <= 0 <= same["ci_high"]


def test_compare_leaves_out_failed_cells_and_says_when_too_few() -> None:
    df = _frame([1.0] * 8, [2.0] * 8)
    df.loc[(df["model_id"] == "b") & (df["repeat"] == 1), "status"] = "error"
    row = compare(df, "a", "b").loc["e2e_s"]
    assert row["n_pairs"] == 4 and row["verdict"] == "too few pairs"
    assert row["diff_p50"] == 2.0 and math.isnan(row["ci_low"])


def test_compare_pairs_a_repeated_prompt_by_occurrence() -> None:
    df = pd.DataFrame(
        [
            {"prompt": "same", "repeat": 0, "model_id": m, "status": "ok", "ttft_s": v}
            for m, values in (("a", [1.0, 10.0]), ("b", [1.5, 10.5]))
            for v in values
        ]
    )
    row = compare(df, "a", "b", metrics=["ttft_s"]).loc["ttft_s"]
    assert row["n_pairs"] == 2 and row["diff_p50"] == 0.5  # not 9.5 or -8.5


def test_compare_refuses_what_it_cannot_compare() -> None:
    df = _frame([1.0] * 6, [1.0] * 6)
    with pytest.raises(InvalidOptionError, match="'c' is not a model of this evaluation"):
        compare(df, "a", "c")
    with pytest.raises(InvalidOptionError, match="two different models"):
        compare(df, "a", "a")
    with pytest.raises(InvalidOptionError, match="no column"):
        compare(df, "a", "b", metrics=["speed"])
