"""The ``%%llm`` command line: parsing it into :class:`CellArgs`, and its usage text.

argparse prints to stderr and calls ``sys.exit`` on a bad option, which in a kernel shows a
SystemExit traceback. Here every parse error becomes one :class:`UsageError` line instead,
which IPython prints without a traceback.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass, field
from typing import Any, NoReturn

from IPython.core.error import UsageError

#: Display formats of ``-f/--format``.
FORMATS = ("markdown", "text", "code", "json", "html")


@dataclass(frozen=True, slots=True)
class CellArgs:
    """The options of one ``%%llm`` cell."""

    models: tuple[str, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None
    system: str | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    format: str | None = None
    stream: bool = True
    out: str | None = None
    chat: str | None = None
    reset: bool = False
    help: bool = False

    def chat_options(self, fmt: str) -> dict[str, Any]:
        """Keyword options for ``Provider.stream``; only those given, so provider defaults
        apply to the rest."""
        options: dict[str, Any] = {}
        for name in ("temperature", "max_tokens", "system", "seed"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.stop:
            options["stop"] = self.stop
        if self.extra:
            options["extra"] = self.extra
        if fmt == "json":
            # Rendering as JSON only makes sense if the model is held to JSON; every provider
            # maps this to its wire (response_format, llama.cpp grammar, Ollama format).
            options["response_format"] = "json"
        return options


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"%%llm: {message} (see %%llm --help)")


def _build_parser() -> _Parser:
    p = _Parser(
        prog="%%llm",
        add_help=False,
        description=(
            "Send the cell to one or more models and stream the answer into the output. "
            "{name} in the cell is replaced by that variable of the notebook (In and Out "
            "included); write {{ and }} for literal braces. Several models answer side by "
            "side, concurrently."
        ),
        epilog=(
            "Examples: %%llm  |  %%llm ollama:qwen3:0.6b -t 0 -n 200  |  %%llm local "
            "llamacpp:smollm2@127.0.0.1:8080 -o answers  |  %%llm -c notes (continue the "
            "conversation 'notes')"
        ),
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model ids or aliases (default: LLMMagics.default_model, else 'local')",
    )
    p.add_argument("-t", "--temperature", type=float, help="sampling temperature, 0 to 2")
    p.add_argument("-n", "--max-tokens", type=int, help="most tokens to generate")
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("--seed", type=int, help="sampling seed")
    p.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="stop sequence (repeatable)"
    )
    p.add_argument(
        "-x",
        "--extra",
        type=_json_object,
        default={},
        metavar="JSON",
        help="provider-specific request fields, e.g. '{\"top_k\": 40}'",
    )
    p.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="how to render the answer (default: LLMMagics.default_format). Answers are "
        "untrusted: markdown shows raw HTML as text and keeps only http/https/mailto links; "
        "json also asks the model for JSON; html is sanitized (nh3): it keeps headings, "
        "paragraphs, lists, tables, text formatting, code, details, http/https/mailto links "
        "and images, and drops script, style, iframe, object, embed, form, svg and math "
        "elements, every on* and style attribute and every other URL",
    )
    p.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="ask for the whole answer at once",
    )
    p.add_argument(
        "-o",
        "--out",
        type=_identifier,
        metavar="VAR",
        help="store the ChatResponse (a list for several models) in this variable",
    )
    p.add_argument(
        "-c", "--chat", metavar="NAME", help="continue the named conversation (one model)"
    )
    p.add_argument(
        "--reset",
        action="store_true",
        help="forget the --chat conversation first (all of them without --chat)",
    )
    p.add_argument("-h", "--help", action="store_true", help="show this help")
    return p


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"top_k\": 40}'")
    return value


def _identifier(text: str) -> str:
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid variable name")
    return text


_PARSER = _build_parser()


def usage() -> str:
    return _PARSER.format_help()


def parse_cell_args(line: str) -> CellArgs:
    """Parse the text after ``%%llm``; a bad option raises one :class:`UsageError` line."""
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"%%llm: cannot split the options: {exc}") from None
    ns = _PARSER.parse_intermixed_args(words)
    return CellArgs(
        models=tuple(ns.models),
        temperature=ns.temperature,
        max_tokens=ns.max_tokens,
        system=ns.system,
        seed=ns.seed,
        stop=tuple(ns.stop),
        extra=dict(ns.extra),
        format=ns.format,
        stream=ns.stream,
        out=ns.out,
        chat=ns.chat,
        reset=ns.reset,
        help=ns.help,
    )
