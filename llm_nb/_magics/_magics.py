"""The ``LLMMagics`` class: ``%%llm``, ``%llm_models``, ``%llm_stats`` and their settings.

Settings are traitlets on the class, so ``%config LLMMagics.default_model = "ollama:qwen3"``
and ``c.LLMMagics.aliases = {...}`` in ipython_config.py both work. Everything that talks to a
server is imported inside the magics, not here: loading the extension must stay instant.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import (
    Magics,
    line_cell_magic,
    line_magic,
    magics_class,
    no_var_expand,
)
from traitlets import Dict, Enum, Float, TraitError, Unicode, observe, validate

from ._args import FORMATS, CellArgs, parse_cell_args, usage
from ._chats import shared
from ._errors import MagicError, StreamInterrupted

if TYPE_CHECKING:
    import pandas as pd

    from .._chats import Conversations
    from .._present._calls import Call
    from .._stream import ChatStream
    from .._types import Message

_MANAGE = ("load", "unload", "pull", "delete")
_MODELS_USAGE = (
    "%llm_models [refresh | load MODEL_ID | unload MODEL_ID | pull MODEL_ID | delete MODEL_ID]"
)
_STATS_USAGE = "%llm_stats [RUN_ID] [--summary] [--all]"
_STATS_HELP = f"""usage: {_STATS_USAGE}

The figures of every call recorded in this session, one row per call, as a DataFrame. It
holds every column, as numbers; it displays as a table of the key ones: the model, status,
finish reason, TTFT (s), tokens/s, tokens, E2E (s) and cost, three significant figures,
"—" where a value is missing.

positional arguments:
  RUN_ID      only this run's calls: a `with llm_nb.new_run(...)` block, one %%llm cell
              with several models, or an evaluation

options:
  --summary   one row per model instead: n_ok, n_error, n_cancelled (calls stopped by
              the user, not errors), error_rate; mean, p50, p90, p95, p99 and max of
              ttft_s, tpot_s, e2e_s and output_tps; throughput; host and server facts
  --all       display every column (the frame is the same); `pandas.DataFrame(_)` or
              llm_nb.stats() display it as pandas does, numbers unrounded
  -h, --help  show this help

The columns are defined in docs/METRICS.md. The same frames come from llm_nb.stats()
and llm_nb.summary(); llm_nb.history() holds every call ever recorded on this machine,
and llm_nb.export(frame, "calls.csv") writes one to a file."""


@magics_class
class LLMMagics(Magics):
    """Talk to LLMs from cells: ``%%llm`` streams answers, ``%llm_models`` lists and manages
    models, ``%llm_stats`` shows every call's figures."""

    default_model = Unicode(
        "",
        help="Model for %%llm cells that name none: a model id or alias. Empty: 'local' "
        "(llm_nb's bundled llama-server).",
    ).tag(config=True)
    aliases = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Short names for model ids, e.g. {'small': 'ollama:qwen3:0.6b'}; they apply to "
        "all of llm_nb (llm_nb.chat included), not only the magics.",
    ).tag(config=True)
    throttle_s = Float(
        0.1,
        min=0.0,
        help="Least seconds between two redraws of a streaming answer (plus one final redraw).",
    ).tag(config=True)
    default_format = Enum(
        FORMATS,
        default_value="markdown",
        help="How %%llm renders answers when -f is not given.",
    ).tag(config=True)

    timeout = Float(
        None,
        allow_none=True,
        help="Seconds a %%llm cell waits for the server to start answering (loading the model "
        "and reading the prompt happen there). None: the provider's (600 s by default). The "
        "cell shows how long it has been waiting meanwhile.",
    ).tag(config=True)
    read_timeout = Float(
        None,
        allow_none=True,
        help="Longest silence, in seconds, once an answer streams before the cell gives up "
        "with an error. None: the provider's (60 s by default).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Set before Configurable.__init__, whose config loading may fire _aliases_changed.
        self._applied_aliases: dict[str, str] = {}
        self._discovered = False
        super().__init__(shell=shell, **kwargs)

    @property
    def _chats(self) -> Conversations:
        # The session's: a chat panel with the same name continues the same conversation.
        return shared()

    # -- settings -------------------------------------------------------------------------

    @validate("timeout", "read_timeout")
    def _check_seconds(self, proposal: Any) -> float | None:
        value = proposal["value"]
        if value is not None and not (0 < value < float("inf")):
            name = proposal["trait"].name
            raise TraitError(f"LLMMagics.{name} must be a positive number of seconds or None")
        return value  # type: ignore[no-any-return]

    @observe("aliases")
    def _aliases_changed(self, change: Any) -> None:
        # Importing the registry imports httpx: not at extension load. If it is not loaded
        # yet, the next magic applies the aliases before resolving any model.
        if "llm_nb._registry" in sys.modules:
            self._sync_aliases()

    def _sync_aliases(self) -> None:
        """Mirror ``aliases`` into the registry, removing ones this class put there before."""
        from .._session import registry

        shared = registry().aliases
        for name, target in self._applied_aliases.items():
            if name not in self.aliases and shared.get(name) == target:
                del shared[name]
        shared.update(self.aliases)
        self._applied_aliases = dict(self.aliases)

    # -- %%llm ----------------------------------------------------------------------------

    @no_var_expand  # the line is ours: IPython's {x} expansion would mangle -x '{"k": 1}'
    @line_cell_magic  # also a line magic, for `%llm --help` and `%llm -c NAME --reset`
    def llm(self, line: str, cell: str | None = None) -> None:
        args = parse_cell_args(line)
        cell = cell or ""
        if args.help:
            print(usage())
            return
        if args.reset:
            self._chats.reset(args.chat)
            if not cell.strip():
                which = f"conversation {args.chat!r}" if args.chat else "all conversations"
                print(f"llm_nb: {which} reset")
                return
        if not cell.strip():
            raise UsageError("%%llm: no prompt; write it in the cell, below the %%llm line")
        models = args.models or (self.default_model or "local",)
        if args.chat and len(models) > 1:
            raise UsageError(
                f"%%llm: --chat continues a conversation with one model; got {len(models)}"
            )
        from .._errors import LLMError

        failure: LLMError | None = None
        try:
            self._ask(args, cell, models)
        except LLMError as exc:
            failure = exc
        # Raised outside the handler so the shown error carries no chained traceback.
        if failure is not None:
            raise MagicError(failure.message) from failure

    def _ask(self, args: CellArgs, cell: str, models: Sequence[str]) -> None:
        from .._options import ChatOptions
        from .._present._calls import Call, column_labels
        from .._present._display import has_rich_display, make_view
        from .._present._runner import run_calls
        from .._present._tables import show_run_table
        from .._types import build_messages
        from ._template import fill

        self._sync_aliases()
        shell = self.shell
        assert shell is not None
        prompt = fill(cell, shell.user_ns)
        fmt = args.format or self.default_format
        options = args.chat_options(fmt)
        for name in ("timeout", "read_timeout"):
            if getattr(self, name) is not None:
                options.setdefault(name, getattr(self, name))
        messages: str | list[Message] = prompt
        if args.chat:
            messages = self._chats.messages(args.chat, prompt)
        # Options and prompt first: resolving a model id may start the bundled server.
        opts = ChatOptions.from_kwargs(**options)
        build_messages(messages, opts.system)
        # Every model is resolved and every option checked before anything is sent.
        calls = [
            Call(label, _open_stream(m, messages, options, args.stream))
            for label, m in zip(column_labels(models), models, strict=True)
        ]
        view = make_view(shell, fmt)
        run_id = None
        if len(calls) > 1:
            from .._stats import new_run

            with new_run() as run_id:
                interrupted = run_calls(calls, view, self.throttle_s)
        else:
            interrupted = run_calls(calls, view, self.throttle_s)

        records = [c.record for c in calls]
        if args.out:
            shell.user_ns[args.out] = records[0] if len(records) == 1 else records
        if args.chat and records[0].status == "ok":
            self._chats.add_turn(args.chat, prompt, records[0].text, records[0].call_id)
        if run_id is not None:
            show_run_table(calls, run_id, has_rich_display(shell))
        if interrupted:
            raise StreamInterrupted(f"interrupted after {sum(c.tokens for c in calls)} tokens")
        _raise_failures(calls)

    # -- %llm_models / %llm_stats ---------------------------------------------------------

    @line_magic
    def llm_models(self, line: str) -> pd.DataFrame | None:
        """%llm_models [refresh | load|unload|pull|delete MODEL_ID]

        With no argument: one table of the models of every configured or discovered server
        (provider, host, model, status, size, quantization, context). ``refresh`` probes the
        local default ports again. ``load``/``unload`` a model (llama-server router mode,
        Ollama), ``pull`` downloads one (Ollama, with a progress bar), ``delete`` removes it.
        """
        from .._errors import LLMError

        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"{_MODELS_USAGE}: {exc}") from None
        self._sync_aliases()
        if not words or words == ["refresh"]:
            from ._models import models_frame

            discover = bool(words) or not self._discovered
            self._discovered = True
            return models_frame(discover)
        if words[0] not in _MANAGE or len(words) != 2:
            raise UsageError(f"usage: {_MODELS_USAGE}")
        from .._present._display import has_rich_display
        from ._models import manage

        failure: LLMError | None = None
        interrupted = False
        done = ""
        try:
            done = manage(
                words[0], words[1], rich=has_rich_display(self.shell), throttle_s=self.throttle_s
            )
        except LLMError as exc:
            failure = exc
        except KeyboardInterrupt:
            # iterate_sync/run_sync have already stopped the work on the loop thread.
            interrupted = True
        if failure is not None:
            raise MagicError(failure.message) from failure
        if interrupted:
            raise StreamInterrupted(f"{words[0]} {words[1]} interrupted")
        print(f"llm_nb: {done}")
        return None

    @line_magic
    def llm_stats(self, line: str) -> pd.DataFrame | None:
        """%llm_stats [RUN_ID] [--summary] [--all]

        Every call recorded in this session, one row each, or one run's calls, as the
        complete DataFrame, displayed as a table of its key columns; ``--summary`` gives one
        row per model with means and percentiles; ``--all`` displays every column.
        ``%llm_stats --help`` says more.
        """
        words = line.split()
        if "-h" in words or "--help" in words:
            print(_STATS_HELP)
            return None
        summary = "--summary" in words
        everything = "--all" in words
        rest = [w for w in words if w not in ("--summary", "--all")]
        if len(rest) > 1 or any(w.startswith("-") for w in rest):
            raise UsageError(f"usage: {_STATS_USAGE}")
        from .. import _tables
        from .._session import stats
        from .._session import summary as run_summary

        run_id = rest[0] if rest else None
        frame = run_summary(run_id) if summary else stats(run_id)
        if everything:
            view = _tables.ALL_VIEW if summary else _tables.ALL_CALLS_VIEW
        else:
            view = _tables.SUMMARY_VIEW if summary else _tables.CALLS_VIEW
        return _tables.shown(frame, view)


LLMMagics.llm.__doc__ = usage()


def _open_stream(model: str, prompt: Any, options: dict[str, Any], stream: bool) -> ChatStream:
    from .._api import provider

    p, name = provider(model)
    if stream:
        return p.stream(name, prompt, **options)
    # Same engine, one whole-body chunk: interrupts and records behave as for a stream.
    return p._make_stream(name, prompt, options, stream=False)


def _raise_failures(calls: Sequence[Call]) -> None:
    failed = [c for c in calls if c.error is not None]
    if not failed:
        return
    first = failed[0]
    if len(calls) == 1:
        raise MagicError(str(first.error)) from first.error
    raise MagicError(
        f"{len(failed)} of {len(calls)} models failed; {first.label}: {first.error}"
    ) from first.error
