"""The benchmark harness runs end to end at tiny sizes and produces numbers.

Not a timed test: no figure is compared with a target here (that is what
``python -m benchmarks.run`` and docs/benchmarks.md are for). No peers, no llama-server.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_harness_runs_and_reports_numbers(tmp_path: Path) -> None:
    out, raw = tmp_path / "benchmarks.md", tmp_path / "benchmarks.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--smoke",
            "--no-peers",
            "--no-llama",
            "--only",
            "startup,chunks,ttft,concurrency",
            "--out",
            str(out),
            "--json",
            str(raw),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**_env(), "LLM_NB_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]

    dump = json.loads(raw.read_text())
    by_name = {s["name"]: s["rows"] for s in dump["sections"]}
    assert set(by_name) == {"startup", "chunks", "ttft", "concurrency"}
    for name, rows in by_name.items():
        assert rows, name
        for row in rows:
            for key in ("llm_nb", "baseline"):
                value = row[key]
                assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, row)

    text = out.read_text()
    assert text.startswith("# Benchmarks")
    assert "| measurement | llm_nb | baseline | ratio | target | met? |" in text
    assert "load average" in text


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("LLM_NB_RECORD", None)
    # tracemalloc (set when hunting leaks in the suite) slows the harness tenfold
    env.pop("PYTHONTRACEMALLOC", None)
    return env


@pytest.mark.slow
def test_the_store_part_runs_and_compares_each_figure(tmp_path: Path) -> None:
    import os

    from benchmarks._common import Sizes
    from benchmarks.store import measure

    os.environ.setdefault("LLM_NB_DATA_DIR", str(tmp_path / "data"))
    section = measure(Sizes.smoke())
    by_name = {r.measurement: r for r in section.rows}
    memory = by_name["recorder memory per call, over 1,000 calls"]
    assert memory.llm_nb is not None and memory.baseline is not None
    assert memory.llm_nb < memory.baseline and memory.met is True
    timed = [r for r in section.rows if r.unit == "s"]
    assert len(timed) >= 7
    for row in timed:
        assert row.note == "" or not row.note.startswith("failed"), row
        assert row.llm_nb is not None and math.isfinite(row.llm_nb) and row.llm_nb > 0, row
        assert row.baseline is not None and row.baseline > 0, row
