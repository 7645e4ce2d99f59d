"""Finished cells on disk (llm_nb/_eval/_store.py): a torn last line is skipped."""

from __future__ import annotations

from pathlib import Path

from llm_nb._eval._store import CellStore


def test_saved_cells_survive_a_torn_line(tmp_path: Path) -> None:
    store = CellStore(tmp_path / "run.jsonl")
    store.append({"key": "a", "status": "ok"})
    store.close()
    with (tmp_path / "run.jsonl").open("a") as f:
        f.write('{"key": "b", "sta')  # the process died mid-write
    store.append({"key": "c", "status": "ok"})
    store.close()
    assert sorted(store.load()) == ["a", "c"]
