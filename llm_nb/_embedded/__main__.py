"""``python -m llm_nb._embedded``: prepare the local server and the default model ahead of time.

Finds the server ``LLM_NB_SERVER`` chooses (the prebuilt one by default; ``native`` builds it
now, once) and fetches the SmolLM2 GGUF, printing progress to stderr and the program and model
to stdout, so CI and first-time users pay the one-off cost up front. ``--native`` prepares the
native build whatever ``LLM_NB_SERVER`` says (router mode needs it). ``--check`` also starts
the server once and waits for /health. ``--serve`` starts it and keeps it running (options as
the default ``local`` server's) until this process is stopped; the server ends with it.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

from llm_nb._embedded.binary.build import ensure_llama_server
from llm_nb._embedded.binary.program import check_platform, native_program, server_program
from llm_nb._embedded.model import DEFAULT_MODEL_ALIAS, ensure_model
from llm_nb._embedded.process.default import default_options
from llm_nb._embedded.process.server import LlamaServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_nb._embedded", description=__doc__)
    parser.add_argument("--native", action="store_true", help="prepare the native build")
    parser.add_argument("--check", action="store_true", help="also start the server once")
    parser.add_argument("--serve", action="store_true", help="start the server and keep it")
    parser.add_argument("--port", type=int, help="with --serve: the port (default: a free one)")
    args = parser.parse_args(argv)
    if args.port is not None and not args.serve:
        parser.error("--port only applies with --serve")
    check_platform()
    program = native_program(ensure_llama_server()) if args.native else server_program()
    model = ensure_model()
    print(f"llama-server: {program.path if program.kind == 'native' else program}")
    print(f"model: {model}", flush=True)
    if args.check:
        with LlamaServer(program, model=model, alias=DEFAULT_MODEL_ALIAS) as server:
            print(f"server ready: {server.url} (log {server.log_path})")
    if args.serve:
        # SIGTERM ends the process through the normal exit path, which stops the server
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with LlamaServer(program, model=model, port=args.port, **default_options()) as server:
            print(f"serving: {server.url} (log {server.log_path})", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
