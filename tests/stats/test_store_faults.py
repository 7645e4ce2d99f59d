"""The stats store never floods or breaks: one warning per file, calls go on, typed errors.

Faults are real, not patched in: a file of garbage, a file with a damaged page, a store path
that is a directory, a full disk (a file size limit, RLIMIT_FSIZE, in a child process), a
read-only file and a read-only data directory (file modes; a root user is mapped to an
ordinary one in a user namespace, since root ignores them). The child processes drive the
public API (``llm_nb.chat`` over a MockTransport, ``stats()``, ``history()``) with the
default recorder, and report what they saw as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import llm_nb
from llm_nb import LLMError
from llm_nb._session import Session, use_session
from llm_nb._stats import Recorder, StatsStoreError, StatsStoreWarning, call_row
from llm_nb._stats._store import Store
from llm_nb._types import ChatResponse
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import OpenAIProvider


def record(i: int) -> ChatResponse:
    return ChatResponse("openai", "127.0.0.1:9", "m", text="t", call_id=f"c{i}", run_id="r")


def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": "m",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"},
                 "finish_reason": "stop"}
            ],
        },
    )  # fmt: skip


async def make_calls(n: int) -> None:
    p = OpenAIProvider(
        "127.0.0.1:9", transport=httpx.MockTransport(answer), retry=RetryPolicy(max_retries=0)
    )
    for _ in range(n):
        assert (await p.chat("m", "hi")).text == "ok"
    await p.aclose()


@contextlib.contextmanager
def recording_to(r: Recorder) -> Iterator[None]:
    """Calls made inside are recorded by ``r`` alone, in a session of their own."""
    with Session(recorder=r, server_facts=False) as s, use_session(s):
        yield


async def calls_in_rounds(r: Recorder, rounds: int, n: int) -> None:
    """``n`` calls, then wait for the store's writer, ``rounds`` times."""
    for _ in range(rounds):
        await make_calls(n)
        assert r.store is not None and r.store.flush()


def append_rows(store: Store, ids: range) -> None:
    for i in ids:
        store.append(call_row(record(i)), "new", "")
    assert store.flush()


def store_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, StatsStoreWarning)]


def one_line(message: str) -> None:
    assert message and "\n" not in message, message


# -- corrupt files -------------------------------------------------------------------------


async def test_a_file_of_garbage_is_set_aside_once_and_calls_go_on(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    garbage = b"this is not a database " * 200
    path.write_bytes(garbage)
    r = Recorder(Store(path))
    with recording_to(r), pytest.warns(StatsStoreWarning) as caught:
        await calls_in_rounds(r, 2, 20)
    messages = store_warnings(caught.list)
    assert len(messages) == 1, messages
    one_line(messages[0])
    assert str(path) in messages[0] and "damaged" in messages[0] and "not a database" in messages[0]
    # Set aside untouched, with a timestamp; the new rows are in a fresh file and in memory.
    aside = set_aside(tmp_path)
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert len(r.rows()) == 40
    hist = llm_nb.history(path)
    assert len(hist) == 40 and set(hist["text"]) == {"ok"}


def set_aside(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith("calls.sqlite.corrupt-")]


def damage_a_page(path: Path) -> None:
    """Overwrite one b-tree page in the middle of a valid store (not its first page)."""
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    size = path.stat().st_size
    assert size >= 4 * page
    with path.open("r+b") as f:
        f.seek(page * (size // page // 2))
        f.write(b"\xff" * page)


def test_a_damaged_page_is_found_on_open_and_not_written_into(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    store = Store(path)
    for i in range(300):
        store.append(call_row(record(i)), "t" * 200, "")
    store.close()
    from llm_nb._stats._store import _flush_at_exit

    _flush_at_exit()  # as at exit: the WAL is folded into the file and closed
    damage_a_page(path)
    damaged = path.read_bytes()

    store = Store(path)
    with pytest.warns(StatsStoreWarning) as caught:
        append_rows(store, range(300, 310))
    messages = store_warnings(caught.list)
    assert len(messages) == 1 and "damaged" in messages[0], messages
    aside = next(p for p in tmp_path.iterdir() if p.name.startswith("calls.sqlite.corrupt-"))
    assert aside.read_bytes() == damaged  # not written into
    names, rows = store.read()
    store.close()
    assert [r[names.index("call_id")] for r in rows] == [f"c{i}" for i in range(300, 310)]


def test_reading_a_corrupt_file_is_a_typed_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    path.write_bytes(b"garbage " * 100)
    with pytest.raises(StatsStoreError) as info:
        llm_nb.history(path)
    assert isinstance(info.value, LLMError)
    one_line(str(info.value))
    assert str(path) in str(info.value) and "damaged" in str(info.value)
    assert path.read_bytes() == b"garbage " * 100  # reading never moves or changes it


# -- files that cannot be written ----------------------------------------------------------


async def test_an_unopenable_store_warns_once_and_keeps_rows_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "calls.sqlite"
    path.mkdir()  # a directory where the file should be: no user can write it as a file
    r = Recorder(Store(path))
    with recording_to(r), pytest.warns(StatsStoreWarning) as caught:
        await calls_in_rounds(r, 5, 10)
    messages = store_warnings(caught.list)
    assert len(messages) == 1, messages
    one_line(messages[0])
    assert str(path) in messages[0] and "llm_nb.stats()" in messages[0]
    assert len(r.rows()) == 50 and all(row["status"] == "ok" for row in r.rows())
    with pytest.raises(StatsStoreError, match="cannot read the stats store"):
        llm_nb.history(path)


def test_export_to_an_unwritable_place_is_a_typed_error(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"a": [1]})
    (tmp_path / "folder.csv").mkdir()
    for target in (tmp_path / "missing" / "out.csv", tmp_path / "folder.csv"):
        with pytest.raises(StatsStoreError) as info:
            llm_nb.export(target, frame)
        assert isinstance(info.value, LLMError)
        one_line(str(info.value))
        assert f"cannot write {target}" in str(info.value)


# -- child processes: full disk, read-only file and directory ------------------------------

CHILD = r"""
import json, os, resource, signal, sys, warnings
from pathlib import Path

scenario, data = sys.argv[1], Path(sys.argv[2])
os.environ["LLM_NB_DATA_DIR"] = str(data)
import httpx, llm_nb
from llm_nb._stats import StatsStoreWarning

def answer(request):
    body = {"model": "m", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": "ok " * 50}}]}
    return httpx.Response(200, json=body)

llm_nb.registry().add(llm_nb.OpenAIProvider("127.0.0.1:9", transport=httpx.MockTransport(answer)))
if scenario == "full":
    # Room for the fresh store's first pages, then no more: a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, hard))
out = {"errors": [], "history": None}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for _ in range(int(sys.argv[3])):
        try:
            llm_nb.chat("openai:m@127.0.0.1:9", "hi")
        except Exception as exc:
            out["errors"].append(repr(exc))
    from llm_nb._session import get_recorder
    get_recorder().store.flush()
if scenario == "full":
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space freed again
out["warnings"] = [str(w.message) for w in caught if issubclass(w.category, StatsStoreWarning)]
out["other_warnings"] = [str(w.message) for w in caught
                         if not issubclass(w.category, StatsStoreWarning)]
out["stats"] = len(llm_nb.stats())
try:
    out["history"] = len(llm_nb.history())
except Exception as exc:
    out["history_error"] = [type(exc).__name__, isinstance(exc, llm_nb.LLMError), str(exc)]
print(json.dumps(out))
"""


def child(scenario: str, data: Path, calls: int, *, as_user: bool = False) -> dict[str, Any]:
    """Run CHILD; with ``as_user`` as an ordinary user, so file modes apply (a root user is
    mapped to uid 1000 in a new user namespace, which keeps file ownership)."""
    cmd = [sys.executable, "-c", CHILD, scenario, str(data), str(calls)]
    if as_user and os.geteuid() == 0:
        unshare = shutil.which("unshare")
        if unshare is None:
            pytest.skip("running as root, and no unshare to drop the privilege to")
        cmd = [unshare, "--user", "--map-user=1000", "--map-group=1000", *cmd]
    env = {**os.environ, "LLM_NB_DATA_DIR": str(data)}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def seed(data: Path, n: int = 3) -> None:
    """A store with ``n`` calls in it, closed as at a normal exit."""
    out = child("seed", data, n)
    assert out["warnings"] == [] and out["history"] == n


def check_one_warning(out: dict[str, Any], path: Path, calls: int, words: str) -> None:
    assert out["errors"] == [] and out["other_warnings"] == [], out
    assert len(out["warnings"]) == 1, out["warnings"]
    one_line(out["warnings"][0])
    assert str(path) in out["warnings"][0] and words in out["warnings"][0], out["warnings"]
    assert out["stats"] == calls  # every call went on, its row kept in memory


def test_a_full_disk_warns_once_and_calls_go_on(tmp_path: Path) -> None:
    out = child("full", tmp_path, 60)
    # An exceeded file size limit reads as an I/O error (a full disk: "disk is full").
    check_one_warning(out, tmp_path / "calls.sqlite", 60, "disk")
    assert out["history"] is not None and out["history"] < 60, out  # what fitted is readable


def test_a_read_only_file_warns_once_and_stays_readable(tmp_path: Path) -> None:
    seed(tmp_path)
    path = tmp_path / "calls.sqlite"
    path.chmod(0o444)
    before = path.read_bytes()
    out = child("read-only file", tmp_path, 30, as_user=True)
    check_one_warning(out, path, 30, "readonly")
    assert out["history"] == 3 and path.read_bytes() == before


def test_a_read_only_data_dir_warns_once_and_stays_readable(tmp_path: Path) -> None:
    seed(tmp_path)
    path = tmp_path / "calls.sqlite"
    before = path.read_bytes()
    tmp_path.chmod(0o555)
    try:
        out = child("read-only dir", tmp_path, 30, as_user=True)
    finally:
        tmp_path.chmod(0o755)
    check_one_warning(out, path, 30, "cannot write its stats store")
    assert out["history"] == 3 and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.sqlite"]


def test_an_empty_read_only_data_dir_reads_as_no_history(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        out = child("empty read-only dir", tmp_path, 2, as_user=True)
    finally:
        tmp_path.chmod(0o755)
    check_one_warning(out, tmp_path / "calls.sqlite", 2, "cannot write its stats store")
    assert out["history"] == 0
