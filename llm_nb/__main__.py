"""``python -m llm_nb "prompt"``: stream a reply to the terminal.

With no ``--model`` it uses ``local``: llama.cpp's server with SmolLM2, started on first use
in a child process that ends with this one (the prebuilt server by default, nothing to build;
``LLM_NB_SERVER`` chooses; the model is fetched once, progress on stderr), so a fresh install
answers offline. The answer goes
to stdout as it streams; a figures line (time to first token, decode speed, tokens) to stderr.
What a model or server wrote reaches the terminal without escape sequences (``_terminal``).
"""

from __future__ import annotations

import argparse
import sys

from ._errors import LLMError

DEFAULT_PROMPT = "In two sentences, what is a large language model?"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m llm_nb",
        description="Stream an answer from an LLM: the bundled local model by default.",
    )
    p.add_argument("prompt", nargs="*", help=f"the prompt (default: {DEFAULT_PROMPT!r})")
    p.add_argument(
        "-m",
        "--model",
        default="local",
        help="model id provider:model[@host:port], e.g. ollama:llama3.2:1b (default: local)",
    )
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("-t", "--temperature", type=float)
    p.add_argument("-n", "--max-tokens", type=int, default=256)
    p.add_argument("--seed", type=int)
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

    stream: _api.SyncStream | None = None
    answer = ControlStripper()
    try:
        stream = _api.stream(
            args.model,
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
    except KeyboardInterrupt:
        sys.stdout.write(answer.flush())
        print("\n[interrupted]", file=sys.stderr)
        return 130
    except LLMError as exc:
        sys.stdout.write(answer.flush())
        # End the partial answer's line so the error starts on its own.
        newline = "\n" if stream is not None and stream.text else ""
        print(f"{newline}llm_nb: {strip_controls(str(exc))}", file=sys.stderr)
        return 1
    sys.stdout.write(answer.flush() + "\n")
    print(strip_controls(_figures(stream.response)), file=sys.stderr)
    return 0


def _figures(r: object) -> str:
    from ._types import ChatResponse

    assert isinstance(r, ChatResponse)
    t = r.trace
    parts = [f"{r.provider}:{r.model_reported or r.model}@{r.host}"]
    if t.t_first_token_ns and t.t_send_ns:
        parts.append(f"ttft {(t.t_first_token_ns - t.t_send_ns) / 1e6:.0f} ms")
    n = r.usage.completion_tokens
    if n and t.t_first_token_ns and t.token_times_ns:
        decode_s = (t.token_times_ns[-1] - t.t_first_token_ns) / 1e9
        if decode_s > 0:  # output_tps as METRICS.md defines it
            parts.append(f"{n / decode_s:.1f} tok/s")
    if n is not None:
        parts.append(f"{n} tokens")
    parts.append(f"finish {r.finish_reason}")
    return "[" + " · ".join(parts) + "]"


if __name__ == "__main__":
    sys.exit(main())
