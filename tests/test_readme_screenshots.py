"""The README's screenshots are in the repository (tools/readme_screenshots.py refreshes them)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_readme_screenshot_is_committed() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "readme_screenshots.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_the_check_fails_when_one_is_missing(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import readme_screenshots as tool
    finally:
        sys.path.remove(str(REPO / "tools"))
    tool.TARGET = tmp_path  # an empty folder: every screenshot is missing
    assert tool.main(["--check"]) == 1
