"""The secret scan (tests/secret_scan.py) finds the canary key in every form, and a key planted
anywhere it looks fails the whole run, whichever test wrote it and whenever.

The planted runs are pytest sessions of their own, in a temporary directory outside this
session's, so that this session's own scan does not find what they plant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tests.secret_scan import scan, scan_file

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.doubles


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


_CONFTEST = """
import pytest

pytest_plugins = ("tests.secret_scan",)


@pytest.fixture(scope="session")
def canary_api_key() -> str:
    return {key!r}
"""

# Three tests, so the one that leaks runs first, in the middle or last, depending on `where`.
_TESTS = """
import os
from pathlib import Path

KEY = {key!r}
WHERE = {where!r}


def leak(where, tmp_path, record_property):
    if where == WHERE == "tmp_path":
        (tmp_path / "server.log").write_text("Authorization: Bearer " + KEY)
    elif where == WHERE == "data_dir":
        Path(os.environ["LLM_NB_DATA_DIR"], "calls.jsonl").write_text(KEY[-8:])
    elif where == WHERE == "junit":
        record_property("header", "***" + KEY[-4:])


def test_first(tmp_path, record_property):
    leak("tmp_path", tmp_path, record_property)


def test_middle(tmp_path, record_property):
    leak("data_dir", tmp_path, record_property)


def test_last(tmp_path, record_property):
    leak("junit", tmp_path, record_property)
"""


def run_session(key: str, where: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="llm_nb-scan-run-") as d:
        root = Path(d)
        (root / "pytest.ini").write_text("[pytest]\n")
        (root / "conftest.py").write_text(_CONFTEST.format(key=key))
        (root / "test_leaks.py").write_text(textwrap.dedent(_TESTS.format(key=key, where=where)))
        (root / "data").mkdir()
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "LLM_NB_DATA_DIR")
        }
        env.update(
            PYTHONPATH=str(REPO),
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            LLM_NB_DATA_DIR=str(root / "data"),
        )
        argv = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "-c", str(root / "pytest.ini"), "--rootdir", str(root),
            "--basetemp", str(root / "basetemp"),
            "--junitxml", str(root / "report.xml"),
            str(root / "test_leaks.py"),
        ]  # fmt: skip
        return subprocess.run(
            argv,
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.mark.parametrize("where", ["tmp_path", "data_dir", "junit"])
def test_a_planted_key_fails_the_run(canary_api_key: str, where: str) -> None:
    done = run_session(canary_api_key, where)
    out = done.stdout + done.stderr
    assert "3 passed" in out, out[-3000:]  # the tests themselves pass: the scan fails the run
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, out[-3000:]
    assert "SECRET SCAN: the canary API key is in 1 of" in out, out[-3000:]
    assert canary_api_key not in out and canary_api_key[-8:] not in out  # names, never quotes


def test_a_clean_run_passes(canary_api_key: str) -> None:
    done = run_session(canary_api_key, "nowhere")
    out = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.OK, out[-3000:]
    assert "3 passed" in out and "SECRET SCAN" not in out, out[-3000:]
