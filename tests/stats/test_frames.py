"""The stats frames (llm_nb/_stats/_frames.py): the summary, the server build label, CSV export."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb._stats import Recorder, _frames, call_row, new_run, warmup
from llm_nb.providers import LlamaCppProvider
from tests.stats.calls import mock, record


async def test_summary_excludes_warmup_and_counts_errors(rec: Recorder) -> None:
    p = mock(LlamaCppProvider)
    with new_run("s1"):
        with warmup():
            await p.chat("m", "hi")
        for _ in range(4):
            await p.stream("m", "hi").collect()
        bad = mock(
            LlamaCppProvider, lambda r: httpx.Response(400, json={"error": {"message": "x"}})
        )
        with pytest.raises(llm_nb.BadRequestError):
            await bad.chat("m", "hi")
        # A stream the user stopped: cancelled, neither ok nor an error.
        stopped = p.stream("m", "hi")
        async for _ in stopped:
            break
        await stopped.aclose()
    assert stopped.response.status == "cancelled"
    df = _frames.frame(rec.rows())
    summ = _frames.summary(df)
    (row,) = summ.to_dict("records")
    assert (row["n_ok"], row["n_error"], row["n_cancelled"]) == (4, 1, 1)
    assert row["error_rate"] == 0.2  # 1 error in the 5 calls that were not stopped
    assert row["output_tokens"] == 12
    ok = df[(df.status == "ok") & ~df.warmup]
    assert row["ttft_s_p50"] == pytest.approx(ok["ttft_s"].median())
    assert row["e2e_s_max"] == pytest.approx(ok["e2e_s"].max())
    for m in ("ttft_s", "tpot_s", "e2e_s", "output_tps"):
        for q in ("mean", "p50", "p90", "p95", "p99", "max"):
            assert f"{m}_{q}" in summ.columns
    assert math.isnan(row["cost_usd"])


@pytest.mark.parametrize(
    ("build_info", "shown"),
    [
        ("b0-unknown", None),  # built without git history: no build at all
        ("b11434-unknown", "b11434"),
        ("b0-a2cbcf7", "a2cbcf7"),
        ("b11434-a2cbcf7", "b11434-a2cbcf7"),
        ("0.12.3", "0.12.3"),  # another server's own string passes as given
        ("", None),
        (None, None),
        (7, None),
    ],
)
def test_server_build_drops_placeholders(build_info: Any, shown: str | None) -> None:
    assert _frames.build_label(build_info) == shown
    df = _frames.frame([call_row(record(run_id="r"))])
    key = ("r", "llamacpp", "127.0.0.1:8080", "m")
    (row,) = _frames.summary(df, servers={key: {"build": build_info}}).to_dict("records")
    assert row["server_build"] == shown


def test_export_csv_and_bad_suffix(rec: Recorder, tmp_path: Path) -> None:
    import pandas as pd

    df = _frames.frame([call_row(record())])
    out = _frames.export(df, tmp_path / "s.csv")
    back = pd.read_csv(out)
    assert back.loc[0, "ttft_s"] == pytest.approx(0.1)
    with pytest.raises(llm_nb.InvalidOptionError, match=r"\.csv or \.parquet"):
        _frames.export(df, tmp_path / "s.xlsx")
