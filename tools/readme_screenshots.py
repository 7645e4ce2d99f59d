"""Copy the README's screenshots from the latest browser test run into docs/screenshots/.

The browser tests (tests/browser/test_panels.py) save what JupyterLab shows to
test-artifacts/browser/; run them, then this script, so the README shows the current UI:

    python -m pytest tests/browser/test_panels.py && python tools/readme_screenshots.py

``--check`` only verifies that every screenshot the README names is in docs/screenshots/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "test-artifacts" / "browser"
TARGET = REPO / "docs" / "screenshots"

#: README image name -> the browser test's screenshot it is copied from.
SHOTS = {
    "chat-panel.png": "panels-01-chat.png",
    "compare-panel.png": "panels-02-compare.png",
    "llm-stats.png": "panels-04-stats.png",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check, copy nothing")
    args = parser.parse_args(argv)
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    problems = [f"README.md does not show docs/screenshots/{n}" for n in SHOTS if n not in readme]
    if not args.check:
        TARGET.mkdir(parents=True, exist_ok=True)
        for name, shot in SHOTS.items():
            source = SOURCE / shot
            if not source.is_file():
                problems.append(f"{source} is missing: run tests/browser/test_panels.py first")
                continue
            shutil.copyfile(source, TARGET / name)
    problems += [f"docs/screenshots/{n} is missing" for n in SHOTS if not (TARGET / n).is_file()]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
