"""Plots of an evaluation (llm_nb/_eval/_plots.py)."""

from __future__ import annotations

import io

import matplotlib
import pytest

matplotlib.use("Agg")

import llm_nb
from llm_nb import InvalidOptionError
from llm_nb._registry import Registry
from tests.eval.scripted_server import MockServer, serve


async def test_plots(reg: Registry) -> None:
    from matplotlib.figure import Figure

    server = MockServer(answer=lambda p: " ".join(["w"] * len(p)))
    models = [serve(reg, server, "eval-a:12").format(m) for m in ("m1", "m2")]
    result = await llm_nb.aevaluate(
        ["a", "bbb", "ccccc"], models, expected="w", scorers=["exact", "contains"],
        warmup=0, repeats=2, progress=False,
    )  # fmt: skip
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    for kind in ("ttft", "tps", "score", "latency"):
        fig = result.plot(kind)
        assert isinstance(fig, Figure) and fig.axes, kind
        fig.savefig(io.BytesIO(), format="png")
    ax = result.plot("ttft").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == models
    # Beside each box, the median's interval: 6 calls per model give [min, max].
    from matplotlib.container import ErrorbarContainer

    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    for bar, model_id in zip(bars, models, strict=True):
        ttft = result.frame.loc[result.frame["model_id"] == model_id, "ttft_s"]
        (_, y), *_ = bar.lines[0].get_xydata()
        assert y == pytest.approx(ttft.median())
        low, high = result.summary.set_index("model_id").loc[
            model_id, ["ttft_s_p50_ci_low", "ttft_s_p50_ci_high"]
        ]
        assert (low, high) == (pytest.approx(ttft.min()), pytest.approx(ttft.max()))
    points = result.plot("latency").axes[0].collections
    assert sorted(len(c.get_offsets()) for c in points) == [6, 6]
    bars = result.plot("score").axes[0].patches
    assert len(bars) == 4
    fig, own = plt.subplots()
    assert result.plot("tps", ax=own) is fig
    plt.close(fig)
    with pytest.raises(InvalidOptionError, match="unknown plot"):
        result.plot("pie")
    with pytest.raises(InvalidOptionError, match="no scores"):
        result.rescore([]).plot("score")
    assert plt.get_fignums() == open_before  # nothing left open in pyplot
