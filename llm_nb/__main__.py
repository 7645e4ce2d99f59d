"""``python -m llm_nb "prompt"``: stream a reply to the terminal.

With no ``--model`` it uses ``local``: llama.cpp's server with SmolLM2, started on first use
in a child process that ends with this one (the prebuilt server by default, nothing to build;
``LLM_NB_SERVER`` chooses; the model is fetched once, progress on stderr), so a fresh install
answers offline; a status line on stderr says so while it starts. The answer goes to stdout
as it streams; a figures line (time to first token, decode speed, tokens) to stderr, for an
interrupted answer too. What a model or server wrote reaches the terminal without escape
sequences (``_terminal``).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from ._errors import LLMError

if TYPE_CHECKING:
    from .providers.base import Provider

DEFAULT_PROMPT = "In two sentences, what is a large language model?"

#: The subcommands, for --help: (name, what it does).
COMMANDS = (
    (
        "notebook",
        "open the quickstart notebook in JupyterLab, the local model server\n"
        "             running (see python -m llm_nb notebook --help)",
    ),
)


def _parser() -> argparse.ArgumentParser:
    commands = "\n".join(f"  {name:<10} {what}" for name, what in COMMANDS)
    p = argparse.ArgumentParser(
        prog="python -m llm_nb",
        usage="%(prog)s [options] [prompt ...]\n       %(prog)s notebook [options]",
        description="Stream an answer from an LLM: the bundled local model by default.",
        epilog=f"commands:\n{commands}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompt", nargs="*", help=f"the prompt (default: {DEFAULT_PROMPT!r})")
    p.add_argument(
        "-m",
        "--model",
        default="local",
        help="model id provider:model[@host:port], e.g. ollama:llama3.2:1b (default: local)",
    )
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("-t", "--temperature", type=float, help="sampling temperature")
    p.add_argument(
        "-n", "--max-tokens", type=int, default=256, help="most tokens to answer (default: 256)"
    )
    p.add_argument("--seed", type=int, help="sampling seed, for repeatable answers")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["notebook"]:  # `python -m llm_nb notebook`: see _notebook
        from ._notebook import main as notebook_main

        return notebook_main(argv[1:])
    args = _parser().parse_args(argv)
    prompt = " ".join(args.prompt) or DEFAULT_PROMPT
    from . import _api
    from ._terminal import ControlStripper, strip_controls
    from ._types import TextDelta

    provider: Provider | None = None
    stream: _api.SyncStream | None = None
    answer = ControlStripper()
    shown = 0  # characters of the answer written so far
    try:
        _start_local_server(args.model)
        provider, name = _api.provider(args.model)
        stream = _api.sync(provider).stream(
            name,
            prompt,
            system=args.system,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            seed=args.seed,
        )
        for delta in stream:
            if isinstance(delta, TextDelta):
                sys.stdout.write(answer.feed(delta.text))
                sys.stdout.flush()
                shown += len(delta.text)
    except KeyboardInterrupt:
        if stream is not None:
            stream.close()  # records the call as cancelled, with what had arrived
            # What arrived but was not written yet (the interrupt came between its arrival
            # and its turn to print): the screen shows the answer the figures count.
            sys.stdout.write(answer.feed(stream.text[shown:]))
        sys.stdout.write(answer.flush())
        newline = "\n" if stream is not None and stream.text else ""
        print(f"{newline}[interrupted]", file=sys.stderr)
        if stream is not None and stream.response.trace.t_send_ns is not None:
            print(strip_controls(_figures(stream.response)), file=sys.stderr)
        return 130
    except LLMError as exc:
        sys.stdout.write(answer.flush())
        # End the partial answer's line so the error starts on its own.
        newline = "\n" if stream is not None and stream.text else ""
        print(f"{newline}llm_nb: {strip_controls(str(exc))}", file=sys.stderr)
        return 1
    finally:
        # One command, one answer: its connections are closed before it returns rather
        # than left pooled for calls that will not come (main() may run in a longer process).
        if provider is not None:
            _api.sync(provider).close()
    sys.stdout.write(answer.flush() + "\n")
    print(strip_controls(_figures(stream.response)), file=sys.stderr)
    return 0


def _figures(r: object) -> str:
    """One line of docs/METRICS.md figures; an interrupted answer's count is of the chunks that
    came (the server sends no usage for it), and says so."""
    import math

    from ._stats import call_row
    from ._types import ChatResponse
    from ._units import phrase

    assert isinstance(r, ChatResponse)
    row = call_row(r)
    parts = [f"{r.provider}:{r.model_reported or r.model}@{r.host}"]
    for name in ("ttft_s", "output_tps"):  # as the notebook's footers and tables say them
        if not math.isnan(row[name]):
            parts.append(phrase(name, row[name]))
    n = row["completion_tokens"]
    if not math.isnan(n):
        parts.append(f"{n:.0f} {'chunks' if row['token_source'] == 'chunk_count' else 'tokens'}")
    parts.append("interrupted" if r.status == "cancelled" else f"finish {r.finish_reason}")
    return "[" + " · ".join(parts) + "]"


def _start_local_server(model: str) -> None:
    """Start the bundled server for ``local`` before the call, with a status line, rather
    than inside the call with the terminal silent for seconds."""
    from ._registry import LOCAL_URL_ENV
    from ._session import registry

    reg = registry()
    try:
        local = reg.parse(model).provider == "local"
    except LLMError:
        return  # the call itself reports a bad model id
    if not local or os.environ.get(LOCAL_URL_ENV):
        return
    from ._embedded.binary.program import server_label

    with Status(f"starting the local server… ({server_label()})", "local server ready") as st:
        factory = reg.local_server_factory
        if factory is not None:
            factory()
        else:
            from ._embedded import default_server

            default_server(st.line)


class Status:
    """A line on stderr saying what is being waited for. On a terminal it is redrawn with the
    seconds elapsed once the wait passes a second, and cleared when done; in a log or a pipe
    it is written once. Either way a wait over a second ends with one line saying so."""

    def __init__(self, what: str, done: str, stream: TextIO | None = None) -> None:
        from ._terminal import strip_controls

        self.what, self.done = strip_controls(what), done
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0

    def __enter__(self) -> Status:
        self._start = time.monotonic()
        if self.tty:
            self._write("\r\x1b[K" + self._text())
            self._thread = threading.Thread(target=self._tick, name="llm_nb-status", daemon=True)
            self._thread.start()
        else:
            self._write(f"llm_nb: {self.what}\n")
        return self

    def _text(self) -> str:
        took = time.monotonic() - self._start
        return f"llm_nb: {self.what}" + (f" {took:.0f} s" if took >= 1 else "")

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._write("\r\x1b[K" + self._text())

    def line(self, text: str) -> None:
        """A line of the work's own progress (a build, a download), above the status."""
        from ._terminal import strip_controls

        text = strip_controls(text)
        if self.tty:
            self._write(f"\r\x1b[K{text}\n{self._text()}")
        else:
            self._write(text + "\n")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        took = time.monotonic() - self._start
        if self.tty:
            # Left in place when the wait failed, so the error below follows it.
            self._write("\r\x1b[K" if exc_type is None else "\n")
        if exc_type is None and took >= 1:
            self._write(f"llm_nb: {self.done} ({took:.1f} s)\n")


if __name__ == "__main__":
    sys.exit(main())
