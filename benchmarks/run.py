"""Run every benchmark and write docs/benchmarks.md.

    python -m benchmarks.run [--quick]
                             [--only startup,chunks,ttft,display,concurrency,fidelity,local,store]
                             [--no-peers] [--no-llama] [--no-native-build]
                             [--out docs/benchmarks.md] [--json FILE]

Peers (openai, ollama, litellm, jupyter_ai_magics, llm) are measured when the interpreter
running this can import them, and reported "not available" otherwise; install them in a
separate virtualenv (see benchmarks/README.md). The llama-server benchmarks use
``ensure_llama_server()`` / ``ensure_model()`` (``LLAMA_SERVER_BIN``, ``LLM_NB_MODEL``).
``local`` installs this checkout into a fresh virtualenv (from the package index) and, unless
``--no-native-build`` (or ``--quick``/``--smoke``), builds the native llama-server there once
(7-12 minutes on 2 cores) for the first-answer comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from . import chunks, concurrency, display, fidelity, local, startup, store, ttft
from ._common import ROOT, Row, Section, Sizes, load_average, machine_facts
from .report import render

SECTIONS = ("startup", "chunks", "ttft", "display", "concurrency", "fidelity", "local", "store")


def _runners(
    sizes: Sizes, peers: bool, llama: bool, profile_dir: Path | None, native_build: bool
) -> dict[str, Callable[[], Section]]:
    return {
        "startup": lambda: startup.measure(sizes, peers),
        "chunks": lambda: chunks.measure(sizes, peers, profile_dir),
        "ttft": lambda: ttft.measure(sizes, peers),
        "display": lambda: display.measure(sizes),
        "concurrency": lambda: concurrency.measure(sizes, llama),
        "fidelity": lambda: fidelity.measure(sizes, llama),
        "local": lambda: local.measure(sizes, llama, native_build),
        "store": lambda: store.measure(sizes, _progress),
    }


def _progress(line: str) -> None:
    print(f"[benchmarks] {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer libraries")
    parser.add_argument("--no-llama", action="store_true", help="skip the llama-server parts")
    parser.add_argument(
        "--no-native-build",
        action="store_true",
        help="local: leave out the native build's first-answer figure (a 7-12 minute build)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write every raw figure here")
    parser.add_argument("--profile-dir", type=Path, help="cProfile llm_nb's chunk runs here")
    args = parser.parse_args(argv)

    sizes = Sizes.smoke() if args.smoke else Sizes.quick() if args.quick else Sizes()
    wanted = args.only.split(",") if args.only else list(SECTIONS)
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    native_build = not (args.no_native_build or args.quick or args.smoke)
    runners = _runners(sizes, not args.no_peers, not args.no_llama, args.profile_dir, native_build)

    started = time.monotonic()
    meta: dict[str, object] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "smoke": args.smoke,
        "load_start": load_average(),
    }
    sections: list[Section] = []
    for name in (s for s in SECTIONS if s in wanted):
        print(f"[benchmarks] {name} …", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            section = runners[name]()
        except Exception as exc:  # one broken benchmark must not lose the others' figures
            traceback.print_exc()
            section = Section(name)
            section.rows.append(
                Row(
                    name,
                    f"{name} benchmark",
                    None,
                    None,
                    "",
                    "",
                    target="",
                    note=f"failed: {type(exc).__name__}: {str(exc)[:300]}",
                )
            )
        print(f"[benchmarks] {name} done in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        sections.append(section)
    meta["load_end"] = load_average()
    meta["elapsed_s"] = time.monotonic() - started

    facts = machine_facts()
    text = render(sections, facts, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.json is not None:
        dump = {
            "meta": meta,
            "facts": facts,
            "sections": [
                {"name": s.name, "rows": [asdict(r) for r in s.rows], "raw": s.raw}
                for s in sections
            ],
        }
        args.json.write_text(json.dumps(dump, indent=1, default=str))
    print(text)
    print(f"[benchmarks] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
