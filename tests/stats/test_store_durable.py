"""A call's row is on disk once the call has returned: the process SIGKILLed at once keeps it.

A child process makes a burst of concurrent calls against a loopback fault server, prints the
call ids once every call has returned, and then keeps its main thread busy; the parent kills
it with SIGKILL the moment it reads that line and looks for every id in the store. A call
interrupted mid-stream is recorded the same way, with the text it had received.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import OPENAI, FaultServer, plays

CHILD = r"""
import asyncio, json, sys
from llm_nb.providers import OpenAIProvider

async def streamed(p, prompt):
    s = p.stream("m", prompt)
    async for _ in s:
        pass
    return s.response

async def main(url, n, partial):
    p = OpenAIProvider(url + "/v1")
    # Half whole answers, half streamed to the end by the caller.
    calls = (p.chat("m", f"q{i}") if i % 2 else streamed(p, f"q{i}") for i in range(n))
    answers = await asyncio.gather(*calls)
    ids = [a.call_id for a in answers]
    if partial:
        # The consumer stops after three tokens: the call ends there, interrupted.
        s = p.stream("m", "stop early")
        got = 0
        async for _ in s:
            got += 1
            if got == 3:
                break
        await s.aclose()
        ids.append(s.response.call_id)
    print("returned " + json.dumps(ids), flush=True)
    while True:  # the main thread stays busy: no other thread is owed time to write
        sum(range(100_000))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"))
"""

N_CALLS = 100


def burst_then_kill(url: str, data_dir: Path, n: int, partial: bool = False) -> list[str]:
    """The ids of the calls the child saw return; it is dead (SIGKILL) when this returns."""
    env = {**os.environ, "LLM_NB_DATA_DIR": str(data_dir), "LLM_NB_RECORD": "1"}
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(n), "1" if partial else "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        line = child.stdout.readline()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        err = child.stderr.read()
    assert line.startswith("returned "), (line, err)
    assert child.returncode == -signal.SIGKILL
    ids: list[str] = json.loads(line.removeprefix("returned "))
    return ids


def stored(data_dir: Path) -> dict[str, tuple[str, str]]:
    conn = sqlite3.connect(data_dir / "calls.sqlite")
    try:
        rows = conn.execute("SELECT call_id, status, text FROM calls").fetchall()
    finally:
        conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


@pytest.mark.slow
def test_every_returned_call_survives_sigkill_over_20_bursts(tmp_path: Path) -> None:
    with FaultServer(plays.answer(OPENAI)) as srv:
        for rep in range(20):
            data_dir = tmp_path / f"rep{rep}"
            ids = burst_then_kill(srv.url, data_dir, N_CALLS)
            assert len(set(ids)) == N_CALLS
            rows = stored(data_dir)
            missing = set(ids) - set(rows)
            assert not missing, f"repetition {rep}: {len(missing)} of {N_CALLS} rows lost"
            assert {status for status, _ in rows.values()} == {"ok"}
            assert {text for _, text in rows.values()} == {"".join(plays.TOKENS)}


def test_a_call_interrupted_mid_stream_survives_sigkill_with_its_partial_text(
    tmp_path: Path,
) -> None:
    with FaultServer(plays.then_fault(OPENAI, 5, "stall")) as srv:
        ids = burst_then_kill(srv.url, tmp_path, 0, partial=True)
    assert len(ids) == 1
    status, text = stored(tmp_path)[ids[0]]
    assert status == "cancelled"
    assert text == "".join(plays.TOKENS[:3])
