"""``python -m llm_nb._embedded``: prepare llama-server and the default model ahead of time.

Builds (or finds) llama-server and fetches the SmolLM2 GGUF, printing progress to stderr and
the two paths to stdout, so CI and first-time users pay the one-off cost up front.
``--check`` additionally starts the server once and waits for /health.
"""

from __future__ import annotations

import argparse
import sys

from llm_nb._embedded.build import ensure_llama_server, ensure_model
from llm_nb._embedded.server import LlamaServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_nb._embedded", description=__doc__)
    parser.add_argument("--check", action="store_true", help="also start the server once")
    args = parser.parse_args(argv)
    binary = ensure_llama_server()
    model = ensure_model()
    print(f"llama-server: {binary}")
    print(f"model: {model}")
    if args.check:
        with LlamaServer(binary, model=model, alias="smollm2") as server:
            print(f"server ready: {server.url} (log {server.log_path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
