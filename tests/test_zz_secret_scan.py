"""End-of-session scan for the canary API key in everything the test session wrote to disk.

Named to run last. It scans every regular file under the session's ``LLM_NB_DATA_DIR`` (the
stats store every recorded call went to), under pytest's temporary directory for this session
(llama-server logs, stores, exports, notebooks...), and the JUnit XML report when one is
requested. The report is only written when the session finishes, so the test also registers a
``pytest_sessionfinish`` hook that scans it (and the directories again, for anything written by
fixture teardown) once it exists, and fails the run if the key is found.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHUNK = 4 * 1024 * 1024
MAX_FILE = 1024 * 1024 * 1024  # larger files are reported, not read


def patterns(key: str) -> dict[str, re.Pattern[bytes]]:
    """By name (failure messages name them rather than quote the key): the key, its first
    and last 8 characters, a 12-character middle piece, an OpenAI-style mask."""
    k = key.encode()
    mid = len(k) // 2
    return {
        "whole key": re.compile(re.escape(k)),
        "first 8": re.compile(re.escape(k[:8])),
        "last 8": re.compile(re.escape(k[-8:])),
        "middle 12": re.compile(re.escape(k[mid - 6 : mid + 6])),
        "masked": re.compile(rb"\*{3,}" + re.escape(k[-4:])),
    }


def files_under(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            path = Path(dirpath, name)
            if path.is_file() and not path.is_symlink():
                yield path


def scan_file(path: Path, key: str, chunk: int = CHUNK) -> list[str]:
    """Patterns found in the file, reading it in overlapping chunks."""
    pats = patterns(key)
    overlap = 64 + len(key)
    found: set[str] = set()
    try:
        if path.stat().st_size > MAX_FILE:
            return [f"(not scanned: {path.stat().st_size} bytes)"]
        with path.open("rb") as fh:
            tail = b""
            while True:
                block = fh.read(chunk)
                if not block:
                    break
                window = tail + block
                for name, p in pats.items():
                    if p.search(window):
                        found.add(name)
                tail = window[-overlap:]
    except OSError:  # vanished or unreadable meanwhile (a socket, a file being rotated)
        return []
    return sorted(found)


def roots(basetemp: Path) -> list[Path]:
    """The session's LLM_NB_DATA_DIR and pytest's temporary directory for this session."""
    out = [basetemp]
    data = os.environ.get("LLM_NB_DATA_DIR")
    if data and Path(data).is_dir():
        out.append(Path(data))
    return out


def scan(paths: list[Path], key: str) -> dict[str, list[str]]:
    hits: dict[str, list[str]] = {}
    for root in paths:
        for f in files_under(root) if root.is_dir() else [root]:
            found = scan_file(f, key)
            if found:
                hits[str(f)] = found
    return hits


class _SessionEndScan:
    """Scans once more after everything (including the JUnit XML) has been written."""

    def __init__(self, key: str, basetemp: Path) -> None:
        self.key = key
        self.basetemp = basetemp

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        config = session.config
        paths = roots(self.basetemp)
        xml = getattr(config.option, "xmlpath", None)
        if xml and Path(xml).is_file():
            paths.append(Path(xml))
        hits = scan(paths, self.key)
        if hits:
            tw = config.get_terminal_writer()
            tw.line()
            tw.line(f"SECRET SCAN: the canary API key was found in {hits}", red=True, bold=True)
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.mark.doubles
def test_scanner_finds_the_key_in_every_form(canary_api_key: str) -> None:
    key = canary_api_key
    with tempfile.TemporaryDirectory(prefix="llm_nb-scan-selftest-") as d:
        root = Path(d)
        masked = key[:8] + "*" * 20 + key[-4:]
        (root / "a.log").write_bytes(b"x" * 100 + f"Bearer {key}".encode())
        (root / "b.txt").write_text(f"Incorrect API key provided: {masked}")
        # A key straddling the boundary between two reads is still found.
        (root / "c.bin").write_bytes(b"\0" * (1000 - 5) + key.encode() + b"\0" * 100)
        (root / "clean.txt").write_text("nothing to see [redacted]")
        (root / "sub").mkdir()
        (root / "sub" / "d.sqlite").write_bytes(b"SQLite format 3\0" + key[-8:].encode())
        hits = scan([root], key)
        assert set(hits) == {str(root / n) for n in ("a.log", "b.txt", "c.bin", "sub/d.sqlite")}
        assert hits[str(root / "b.txt")] == ["first 8", "masked"]
        straddling = scan_file(root / "c.bin", key, chunk=1000)
        assert "whole key" in straddling


def test_no_file_the_session_wrote_holds_the_canary(
    canary_api_key: str, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> None:
    basetemp = tmp_path_factory.getbasetemp()
    if not pytestconfig.pluginmanager.has_plugin("llm_nb-secret-scan"):
        pytestconfig.pluginmanager.register(
            _SessionEndScan(canary_api_key, basetemp), name="llm_nb-secret-scan"
        )
    paths = roots(basetemp)
    n_files = sum(1 for p in paths for _ in files_under(p))
    hits = scan(paths, canary_api_key)
    assert not hits, f"the canary API key is in {len(hits)} of {n_files} files: {hits}"
