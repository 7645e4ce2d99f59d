"""Finished cells on disk, so an interrupted evaluation resumes where it stopped.

One JSON-lines file per run under ``<data dir>/eval/`` (``LLM_NB_DATA_DIR`` or the user data
dir, beside the stats store). Each finished cell is appended and flushed as it ends, so an
interrupt, a cancelled task or a dead kernel loses at most the cells still in flight. A
cell written twice (an error retried on resume) is read back as its last line; a torn last
line (the process died mid-write) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("llm_nb.eval")


def eval_dir() -> Path:
    from .._stats._store import default_path

    return default_path().parent / "eval"


def run_path(run: str) -> Path:
    """The file of run ``run``: a readable form of the name plus a digest of the exact one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", run).strip("._")[:80] or "run"
    digest = hashlib.sha256(run.encode()).hexdigest()[:8]
    return eval_dir() / f"{readable}-{digest}.jsonl"


class CellStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @classmethod
    def for_run(cls, run: str) -> CellStore:
        return cls(run_path(run))

    def load(self) -> dict[str, dict[str, Any]]:
        """Saved cells by key (the last line of each key wins)."""
        cells: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return cells
        for number, line in enumerate(lines, 1):
            try:
                cell = json.loads(line)
                cells[cell["key"]] = cell
            except (ValueError, KeyError, TypeError):
                log.debug("skipping unreadable line %d of %s", number, self.path)
        return cells

    def append(self, cell: dict[str, Any]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = _ends_torn(self.path)
            self._file = self.path.open("a", encoding="utf-8")
            if torn:
                # Don't glue the first new cell onto a half-written line.
                self._file.write("\n")
        self._file.write(json.dumps(cell, default=str, ensure_ascii=False) + "\n")
        self._file.flush()

    def clear(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _ends_torn(path: Path) -> bool:
    """Whether the file's last line lacks its newline."""
    try:
        with path.open("rb") as f:
            if f.seek(0, 2) == 0:
                return False
            f.seek(-1, 2)
            return f.read(1) != b"\n"
    except FileNotFoundError:
        return False
