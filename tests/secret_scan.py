"""The secret scan: after the whole test session, look for the canary API key in everything it
wrote to disk, and fail the run if it is anywhere.

A pytest plugin (``tests/conftest.py`` loads it), so it does not depend on the order the
tests run in, nor on which of them were chosen: it scans once everything is written, in a
``pytest_sessionfinish`` hook that runs after the JUnit XML report. It reads every regular file
under the session's ``LLM_NB_DATA_DIR`` (the stats store every recorded call went to), under
pytest's temporary directory for this session (llama-server logs, stores, exports,
notebooks...), and the JUnit XML report when one is requested. A hit prints the files and the
forms found (never the key) and sets the exit status to "tests failed".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Scope:
    key: str
    basetemp: Path


_SCOPE = pytest.StashKey[_Scope]()


@pytest.fixture(scope="session", autouse=True)
def _secret_scan_scope(
    canary_api_key: str, tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> None:
    """Notes the key and this session's temporary directory for the scan at the end."""
    pytestconfig.stash[_SCOPE] = _Scope(canary_api_key, tmp_path_factory.getbasetemp())


@pytest.hookimpl(trylast=True)  # after junitxml's own sessionfinish has written the report
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    scope = config.stash.get(_SCOPE, None)
    if scope is None:  # no test ran, so nothing was written
        return
    paths = roots(scope.basetemp)
    xml = config.getoption("xmlpath", None)
    if xml and Path(xml).is_file():
        paths.append(Path(xml))
    n_files = sum(1 for p in paths for _ in (files_under(p) if p.is_dir() else [p]))
    hits = scan(paths, scope.key)
    if hits:
        tw = config.get_terminal_writer()
        tw.line()
        tw.line(
            f"SECRET SCAN: the canary API key is in {len(hits)} of {n_files} files: {hits}",
            red=True,
            bold=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
