"""What an evaluation returns (llm_nb/_eval/_result.py): the per-cell frame, the per-model
summary and the scores."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import pytest

import llm_nb
from llm_nb import scorers
from llm_nb._registry import Registry
from tests.eval.scripted_server import MockServer, serve


async def test_frame_summary_and_scores(reg: Registry) -> None:
    a, b = MockServer(), MockServer(answer=lambda p: "wrong")
    ma = serve(reg, a, "eval-a:1").format("m1")
    mb = serve(reg, b, "eval-b:1").format("m2")
    prompts = pd.DataFrame(
        {
            "prompt": ["one", "two", "three"],
            "expected": ["answer to one", "answer to two", None],
            "topic": ["x", "y", "z"],
        }
    )

    def row_aware(answer: str, expected: Any, row: dict[str, Any]) -> float:
        return 0.5 if row["topic"] == "x" else 1.0

    result = await llm_nb.aevaluate(
        prompts,
        [ma, mb],
        repeats=2,
        warmup=0,
        scorers=["exact", "icontains", row_aware, lambda ans, exp: len(ans) > 3],
        progress=False,
        max_tokens=8,
    )
    df = result.frame
    assert len(df) == 12 and list(df.columns[:3]) == ["prompt", "expected", "topic"]
    assert list(df[["prompt", "model_id", "repeat"]].itertuples(index=False))[:4] == [
        ("one", ma, 0),
        ("one", ma, 1),
        ("one", mb, 0),
        ("one", mb, 1),
    ]
    for col in ("answer", "error", "score_exact", "score_icontains", "score_row_aware",
                "score_lambda", "ttft_s", "queue_s", "output_tps", "completion_tokens",
                "text_sha256", "call_id", "run_id"):  # fmt: skip
        assert col in df.columns, col
    assert set(df["status"]) == {"ok"} and df["error"].isna().all()
    assert (df["run_id"] == result.run).all() and result.run.startswith("eval-")
    on_a = df[df["model_id"] == ma]
    assert on_a["score_exact"].tolist()[:4] == [1.0, 1.0, 1.0, 1.0]
    assert on_a["score_exact"].isna().sum() == 2  # no expected answer for "three"
    assert df[df["model_id"] == mb]["score_exact"].tolist()[:4] == [0.0] * 4
    assert df[df["topic"] == "x"]["score_row_aware"].eq(0.5).all()
    assert df["completion_tokens"].tolist()[:2] == [3.0, 3.0]
    assert (df["token_source"] == "server_usage").all()
    assert a.requests == b.requests == 6 and a.bodies[0]["max_tokens"] == 8

    summ = result.summary
    assert summ["model_id"].tolist() == [ma, mb]
    first = summ.iloc[0]
    assert first["score_exact"] == 1.0 and summ.iloc[1]["score_exact"] == 0.0
    assert first["score_row_aware"] == pytest.approx((0.5 * 2 + 1.0 * 4) / 6)
    assert (first["n"], first["n_ok"], first["error_rate"]) == (6, 6, 0.0)
    for col in ("ttft_s_p50", "ttft_s_p95", "output_tps_mean", "e2e_s_mean", "host_cpu"):
        assert col in summ.columns, col
    assert first["ttft_s_p50"] == pytest.approx(on_a["ttft_s"].median())
    assert result.resumed == 0 and "12 cells" in repr(result)
    html = result._repr_html_()
    assert f"<b>evaluation {result.run}</b>: 12 cells" in html
    # The summary table: one row per model, its scores, its cell count (n = 6); key columns
    # only, with units, while .summary keeps them all.
    heads = re.findall(r"<th\b[^>]*>(.*?)</th>", html)
    scores = [f"score: {c[len('score_') :]}" for c in summ.columns if c.startswith("score_")]
    assert heads[: len(scores) + 2] == ["model", *scores, "cells"], heads
    assert "TTFT p50 (s)" in heads and len(heads) < len(summ.columns)
    rows = html.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
    assert len(rows) == 2
    for row, model_id in zip(rows, (ma, mb), strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0] == model_id and cells[len(scores) + 1] == "6", cells
    assert f"of {len(summ.columns)} columns" in html

    again = result.rescore({"has_to": scorers.contains})
    assert list(again.summary.columns[:2]) == ["model_id", "score_has_to"]
    assert a.requests == 6  # rescoring makes no call
