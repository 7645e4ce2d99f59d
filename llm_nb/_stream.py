"""ChatStream: one streamed call as an object.

It yields typed deltas, fills a :class:`ChatResponse` record as chunks arrive (so a partial
answer survives any failure), times every token-carrying chunk with a monotonic clock, and
closes the HTTP response in ``finally`` whether the stream finished, failed, was abandoned or
was cancelled. Providers supply only the wire specifics through :class:`WireDialect`. Each
call's start and end go to the observers of the provider's session (see ``_observers``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from . import _observers
from ._errors import APIConnectionError, APITimeoutError, LLMError, ProtocolError
from ._types import (
    ChatResponse,
    Delta,
    ReasoningDelta,
    TextDelta,
    ToolCall,
    ToolCallDelta,
)
from ._wire._lines import IncrementalDecoder, drain
from ._wire.connection import stall_message

if TYPE_CHECKING:
    from types import TracebackType


class WireDialect(Protocol):
    """What a provider tells the stream engine about its wire."""

    def decoder(self) -> IncrementalDecoder[Any]:
        """A fresh decoder for one response body: bytes in, parsed chunk objects out (SSE
        data or NDJSON lines), with the wire's end marker as an object of its own. Synchronous,
        so the engine reads the body with no async generator between it and httpx."""
        ...

    def apply_chunk(self, obj: Any, record: ChatResponse) -> list[Delta] | None:
        """Update the record from one chunk (usage, timings, finish reason, model) and return
        its deltas; None means the stream is over (``[DONE]``, ``done: true``)."""
        ...

    def redact(self, exc: LLMError) -> LLMError:
        """``exc`` with anything secret taken out of its message: errors raised while reading
        the body quote what the server sent, which may echo the key back."""
        ...


SendFn = Callable[[ChatResponse], Awaitable[httpx.Response]]


def _body_chunks(http: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive. Without a content encoding there is nothing to decode,
    and the raw iterator saves a generator level and two calls per chunk; a body already read
    (a response built in memory) is only available decoded."""
    identity = http.headers.get("content-encoding", "identity") == "identity"
    return http.aiter_raw() if identity and not http.is_stream_consumed else http.aiter_bytes()


class ChatStream:
    """Async iterator of :data:`Delta` for one call; ``response`` is the record.

    Use as ``async with provider.stream(...) as s: async for d in s: ...``, or just iterate:
    the response is closed when the iteration ends, fails or the stream is closed.
    """

    def __init__(
        self,
        record: ChatResponse,
        send: SendFn,
        dialect: WireDialect,
        *,
        observers: _observers.CallObservers | None = None,
    ) -> None:
        self.response = record
        self._send = send
        self._dialect = dialect
        #: Who hears of this call (None: the default session's observers, found at the start).
        self._observers = observers
        self._gen: AsyncIterator[Delta] | None = None
        self._http: httpx.Response | None = None
        self._tools: dict[int, list[Any]] = {}
        self._ended = False
        self._finished = False

    # -- iteration ------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Delta]:
        if self._gen is None:
            self._gen = self._run()
        return self._gen

    async def __anext__(self) -> Delta:
        return await self.__aiter__().__anext__()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the stream: closes the connection; an unfinished call is recorded as cancelled."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]
        elif not self._finished:
            self._finish("cancelled", None)

    async def collect(self) -> ChatResponse:
        """Consume the whole stream and return the final record."""
        async for _ in self:
            pass
        return self.response

    @property
    def text(self) -> str:
        return self.response.text

    # -- engine ---------------------------------------------------------------------------

    async def _run(self) -> AsyncIterator[Delta]:
        record = self.response
        trace = record.trace
        # Observers first, so their work (the recorder's bookkeeping) is not counted as the
        # server's time to first token.
        if self._observers is None:
            self._observers = _observers.default()
        self._observers.started(record)
        trace.started_at = datetime.now(UTC)
        trace.t_send_ns = time.perf_counter_ns()
        status = "error"
        error: BaseException | None = None
        try:
            self._http = await self._send(record)
            trace.t_headers_ns = time.perf_counter_ns()
            decoder = self._dialect.decoder()
            apply, absorb, clock = self._dialect.apply_chunk, self._absorb, time.perf_counter_ns
            body = _body_chunks(self._http)
            next_chunk = body.__anext__
            # Chunk objects are applied to the record one at a time, each only when the caller
            # asks for more, so a caller that stops early finds in the record just what it
            # was given. One flat loop (no helper generator per read, no second loop for the
            # decoder's flush): it runs once per token, and each level was a measurable share.
            at_eof = False
            while not (self._ended or at_eof):
                try:
                    objs = decoder.feed(await next_chunk())
                except StopAsyncIteration:
                    objs, at_eof = decoder.flush(), True
                for obj in objs:
                    deltas = apply(obj, record)
                    if deltas is None:
                        self._ended = True
                        break
                    if deltas:
                        for delta in absorb(deltas, clock()):
                            yield delta
            trace.t_done_ns = clock()
            if not at_eof:
                # Ended by its marker: the rest (the chunked terminator) is read so the
                # connection goes back to the pool.
                await drain(body)
            if not self._ended and record.finish_reason_raw is None:
                # No [DONE] / done:true and no finish reason: the server closed the body
                # early. Whatever came is kept, but the call did not complete. A stream
                # that said why it finished is whole without its end marker, as
                # openai-python reads it (ik_llama.cpp sends none without --send-done).
                raise ProtocolError(
                    f"{record.provider} at {record.host} ended the stream before its end "
                    f"marker, after {len(record.text)} characters; the partial answer is kept",
                    provider=record.provider,
                    url=record.host,
                    partial=record,
                )
            status = "ok"
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt) as exc:
            status, error = "cancelled", exc
            raise
        except httpx.TimeoutException as exc:
            status = "timeout"
            error = APITimeoutError(
                stall_message(exc, record.provider, record.host, len(record.text)),
                provider=record.provider,
                url=record.host,
                partial=record,
            )
            raise error from exc
        except httpx.HTTPError as exc:
            error = APIConnectionError(
                f"the connection to {record.provider} at {record.host} broke mid-answer "
                f"({type(exc).__name__}) after {len(record.text)} characters; the partial "
                "answer is kept",
                provider=record.provider,
                url=record.host,
                partial=record,
            )
            raise error from exc
        except LLMError as exc:
            if isinstance(exc, APITimeoutError):
                status = "timeout"
            error = exc
            if record.trace.t_headers_ns is None:
                raise
            # Raised reading the body: the message and its cause (a JSON error holds the whole
            # frame) quote what the server sent, which may echo the key back.
            if exc.partial is None:
                exc.partial = record
            raise self._dialect.redact(exc) from None
        except BaseException as exc:
            error = exc
            raise
        finally:
            if self._http is not None:
                await self._http.aclose()
            self._finish(status, error)

    def _absorb(self, deltas: list[Delta], now: int) -> list[Delta]:
        """Add deltas to the record and time them; returns them with tool-call indexes set."""
        record = self.response
        trace = record.trace
        counted = False
        for i, delta in enumerate(deltas):
            if isinstance(delta, TextDelta):
                if not delta.text:
                    continue
                record.add_text(delta.text)
                if trace.t_first_answer_ns is None:
                    trace.t_first_answer_ns = now
            elif isinstance(delta, ReasoningDelta):
                if not delta.text:
                    continue
                record.add_reasoning(delta.text)
            else:
                if delta.index < 0:
                    # A wire that sends whole calls (Ollama) leaves numbering to us.
                    delta = ToolCallDelta(len(self._tools), delta.id, delta.name, delta.arguments)
                    deltas[i] = delta
                slot = self._tools.setdefault(delta.index, [None, None, []])
                slot[0] = slot[0] or delta.id
                slot[1] = slot[1] or delta.name
                slot[2].append(delta.arguments)
            counted = True
        if counted:
            # Only chunks that carry content count as tokens (METRICS.md: role-only and
            # empty chunks neither start TTFT nor add a gap).
            if trace.t_first_token_ns is None:
                trace.t_first_token_ns = now
            trace.token_times_ns.append(now)
        return deltas

    def _finish(self, status: str, error: BaseException | None) -> None:
        if self._finished:
            return
        self._finished = True
        record = self.response
        record.trace.t_end_ns = time.perf_counter_ns()
        if self._tools:
            record.tool_calls = [
                ToolCall(name or "", "".join(args), id_)
                for _, (id_, name, args) in sorted(self._tools.items())
            ]
            # Ollama says "stop" after tool calls; the others say "tool_calls". One name here.
            if record.finish_reason in (None, "stop") and status == "ok":
                record.finish_reason = "tool_calls"
        record.status = status  # type: ignore[assignment]
        record.error = error
        if self._observers is None:
            self._observers = _observers.default()
        self._observers.finished(record)
