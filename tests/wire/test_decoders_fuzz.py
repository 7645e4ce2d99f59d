"""Fuzzing the wire decoders and the streaming path above them.

Properties:

* A random *valid* SSE stream (events with multi-line data, ``event``/``id``/``retry``/unknown
  fields, comments, multi-byte UTF-8, LF / CRLF / lone-CR line ends, no trailing blank line)
  decodes to exactly the events it was built from, however it is split: in one piece, one
  byte at a time, cut at every single position, and cut into many random pieces.
* The same for random NDJSON streams of arbitrary JSON values (blank lines, CRLF, no final
  newline, ``ensure_ascii`` on or off).
* Arbitrary bytes never make a decoder raise anything but ProtocolError, and its output (or
  its error) does not depend on how the bytes were split.
* The full provider path: an OpenAI / Ollama provider over ``httpx.MockTransport`` whose body
  is a random answer delivered in random chunk sizes yields exactly the answer's text.

Sized to run in well under 40 s (``max_examples`` below); ``deadline=None`` because a shared
CI machine makes per-example timing meaningless.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_nb._errors import LLMError, ProtocolError
from llm_nb._session import Session, run_sync, use_session
from llm_nb._wire.ndjson import NDJSONDecoder
from llm_nb._wire.retry import RetryPolicy
from llm_nb._wire.sse import SSEDecoder, SSEEvent
from llm_nb.providers import OllamaProvider, OpenAIProvider


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module", autouse=True)
def no_recording() -> Iterator[None]:
    """Thousands of calls: made in a session that records nothing (no stats store, no
    hardware sampler, no server facts)."""
    with Session(record=False, server_facts=False) as s, use_session(s):
        yield


# -- splitting helpers ------------------------------------------------------------------------


def feed_pieces(decoder: Any, pieces: list[bytes]) -> list[Any]:
    out: list[Any] = []
    for p in pieces:
        out += decoder.feed(p)
    return out + decoder.flush()


def cut(data: bytes, points: list[int]) -> list[bytes]:
    points = sorted({min(max(p, 0), len(data)) for p in points})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def outcome(make: Any, pieces: list[bytes]) -> tuple[str, Any]:
    """("ok", items) or ("ProtocolError", None); any other exception propagates."""
    try:
        return "ok", feed_pieces(make(), pieces)
    except ProtocolError:
        return "ProtocolError", None


# -- text strategies ------------------------------------------------------------------------

# Valid UTF-8 text without line breaks, weighted towards the characters that matter here:
# multi-byte sequences of every length, JSON's specials, SSE's colon and space.
TRICKY = 'aé中😀\u200d🇫🇷ß:  {}[]"\\,\x00\x7f\u2028\ufeff\ufffd'
LINE_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(TRICKY),
        st.characters(codec="utf-8", exclude_characters="\r\n"),
    ),
    max_size=24,
)
FIELD_NAME = st.text(alphabet="abcdefxyz-_", min_size=1, max_size=6).filter(
    lambda n: n not in ("data", "event", "id", "retry")
)
EOL = st.sampled_from(["\n", "\r\n", "\r"])
SSE_LINE_KINDS = ["data", "data", "data-nospace", "data-bare", "event", "id", "id-nul",
                  "comment", "retry", "unknown"]  # fmt: skip


# -- SSE: random valid streams ---------------------------------------------------------------


@st.composite
def sse_streams(draw: st.DrawFn) -> tuple[bytes, list[SSEEvent]]:
    """(stream bytes, the events a conforming decoder must produce)."""
    lines: list[str] = []
    expected: list[SSEEvent] = []
    last_id: str | None = None
    for _ in range(draw(st.integers(0, 7))):
        if draw(st.integers(0, 5)) == 0:
            # A block of comments only (keep-alives): dispatches nothing.
            lines += [":" + draw(LINE_TEXT) for _ in range(draw(st.integers(1, 2)))]
            lines.append("")
            continue
        data: list[str] = []
        event: str | None = None
        block: list[str] = []
        for _ in range(draw(st.integers(1, 6))):
            kind = draw(st.sampled_from(SSE_LINE_KINDS))
            value = draw(LINE_TEXT)
            if kind == "data":
                block.append("data: " + value)
                data.append(value)
            elif kind == "data-nospace":
                value = value.lstrip(" ")
                block.append("data:" + value)
                data.append(value)
            elif kind == "data-bare":
                block.append("data")
                data.append("")
            elif kind == "event":
                block.append("event: " + value)
                event = value
            elif kind == "id":
                value = value.replace("\x00", "")
                block.append("id: " + value)
                last_id = value
            elif kind == "id-nul":
                block.append("id: " + value + "\x00")  # ignored, as the standard says
            elif kind == "comment":
                block.append(":" + value)
            elif kind == "retry":
                block.append("retry: " + str(draw(st.integers(0, 10_000))))
            else:
                block.append(draw(FIELD_NAME) + ": " + value)
        if not data:
            block.append("data: x")
            data.append("x")
        lines += block
        lines.append("")  # the blank line that dispatches
        expected.append(SSEEvent("\n".join(data), event, last_id))
    # The last blank line is optional: flush() at EOF dispatches a pending event.
    if lines and lines[-1] == "" and draw(st.booleans()):
        lines.pop()
    out: list[str] = []
    prev_eol = ""
    for i, line in enumerate(lines):
        eol = draw(EOL)
        if prev_eol == "\r" and line == "" and eol == "\n":
            eol = "\r"  # "\r" then "\n" would be one CRLF, not two line ends
        if i == len(lines) - 1 and draw(st.booleans()):
            eol = ""  # the stream may end without a final line end
        out.append(line + eol)
        prev_eol = eol
    return "".join(out).encode("utf-8"), expected


def sse_decode(pieces: list[bytes]) -> list[SSEEvent]:
    return feed_pieces(SSEDecoder(), pieces)


@fuzz(700)
@given(sse_streams(), st.lists(st.integers(0, 4000), max_size=40))
def test_sse_random_streams_decode_to_their_events_for_any_split(
    stream: tuple[bytes, list[SSEEvent]], cuts: list[int]
) -> None:
    data, expected = stream
    assert sse_decode([data]) == expected
    assert sse_decode(bytewise(data)) == expected
    assert sse_decode(cut(data, cuts)) == expected


@fuzz(150)
@given(sse_streams())
def test_sse_random_streams_every_single_cut(stream: tuple[bytes, list[SSEEvent]]) -> None:
    data, expected = stream
    for i in range(len(data) + 1):
        assert sse_decode([data[:i], data[i:]]) == expected, i


# -- NDJSON: random valid streams -------------------------------------------------------------

JSON_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(TRICKY + "\n\r\t"), st.characters(codec="utf-8"))
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=10,
)


@st.composite
def ndjson_streams(draw: st.DrawFn) -> tuple[bytes, list[Any]]:
    objs = draw(st.lists(JSON, max_size=8))
    parts: list[bytes] = []
    for obj in objs:
        for _ in range(draw(st.integers(0, 1))):
            parts.append(draw(st.sampled_from([b"\n", b"\r\n", b"  \n", b"\t\r\n"])))
        text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
        pad = draw(st.sampled_from(["", " ", "\t"]))
        parts.append((pad + text + pad).encode() + draw(st.sampled_from([b"\n", b"\r\n"])))
    if parts and draw(st.booleans()):
        parts[-1] = parts[-1].rstrip(b"\r\n")  # no final newline
    return b"".join(parts), objs


def nd_decode(pieces: list[bytes]) -> list[Any]:
    return feed_pieces(NDJSONDecoder(), pieces)


@fuzz(400)
@given(ndjson_streams(), st.lists(st.integers(0, 4000), max_size=40))
def test_ndjson_random_streams_decode_to_their_values_for_any_split(
    stream: tuple[bytes, list[Any]], cuts: list[int]
) -> None:
    data, expected = stream
    assert nd_decode([data]) == expected
    assert nd_decode(bytewise(data)) == expected
    assert nd_decode(cut(data, cuts)) == expected


# -- arbitrary bytes -----------------------------------------------------------------------

# Bytes that look like the protocols' syntax, so garbage reaches the deeper branches.
ATOM_LIST = [b"data: ", b"data:", b"event: ", b"id: ", b"retry: 5", b":", b"\r", b"\n",
             b"\r\n", b"{", b"}", b'"', b"\\", b"[DONE]", b"x", b" ", b"\x00", b"\xff", b"\xc3",
             b"\xa9", b"\xe4\xb8", b"\xf0\x9f\x98", b"\xef\xbb\xbf", b'{"a":1}', b"null",
             b"1e999"]  # fmt: skip
ATOMS = st.sampled_from(ATOM_LIST)
GARBAGE = st.one_of(st.binary(max_size=400), st.lists(ATOMS, max_size=80).map(b"".join))


@fuzz(1000)
@given(GARBAGE, st.lists(st.integers(0, 2000), max_size=30))
def test_arbitrary_bytes_only_protocol_error_and_split_independent(
    data: bytes, cuts: list[int]
) -> None:
    for make in (SSEDecoder, NDJSONDecoder):
        whole = outcome(make, [data])
        assert outcome(make, bytewise(data)) == whole
        assert outcome(make, cut(data, cuts)) == whole
    # SSE itself never rejects content (bad UTF-8 becomes U+FFFD); only NDJSON parses JSON.
    assert outcome(SSEDecoder, [data])[0] == "ok"


@fuzz(500)
@given(GARBAGE, st.lists(st.integers(0, 2000), max_size=30), st.integers(1, 64))
def test_arbitrary_bytes_with_a_tiny_line_limit_only_protocol_error(
    data: bytes, cuts: list[int], limit: int
) -> None:
    for make in (SSEDecoder, NDJSONDecoder):
        outcome(lambda m=make: m(max_line_bytes=limit), cut(data, cuts))


# -- exhaustive cuts of one rich stream --------------------------------------------------------

RICH_SSE = (
    "\ufeff: keep-alive\r\n\r\n"
    'data: {"choices":[{"delta":{"content":"h\u00e9llo \u2713 \U0001f600"}}]}\r\n\r\n'
    "event: note\rdata: a\rdata:b\rid: 9\r\r"
    "data: \u4e2d\u6587\n:comment\ndata\n\n"
    "data: [DONE]"
).encode()


def test_rich_sse_stream_every_pair_of_cuts() -> None:
    whole = sse_decode([RICH_SSE])
    # The leading BOM is not stripped (the standard says it should be): the first line is
    # an unknown field "\ufeff: keep-alive"... which is a comment-like no-op either way.
    assert [e.data for e in whole] == [
        '{"choices":[{"delta":{"content":"h\u00e9llo \u2713 \U0001f600"}}]}',
        "a\nb",
        "\u4e2d\u6587\n",
        "[DONE]",
    ]
    assert whole[1].event == "note" and whole[1].id == "9" and whole[3].id == "9"
    n = len(RICH_SSE)
    for i in range(n + 1):
        for j in range(i, n + 1):
            assert sse_decode([RICH_SSE[:i], RICH_SSE[i:j], RICH_SSE[j:]]) == whole, (i, j)


RICH_NDJSON = (
    '{"message":{"content":"a\u00e9"},"done":false}\r\n'
    "\n  \n"
    '{"message":{"content":"\U0001f600\u4e2d"},"done":false}\n'
    '["x", 1, null]\r\n'
    '{"done":true,"eval_count":2}'
).encode()


def test_rich_ndjson_stream_every_pair_of_cuts() -> None:
    whole = nd_decode([RICH_NDJSON])
    assert len(whole) == 4 and whole[1]["message"]["content"] == "\U0001f600\u4e2d"
    n = len(RICH_NDJSON)
    for i in range(n + 1):
        for j in range(i, n + 1):
            assert nd_decode([RICH_NDJSON[:i], RICH_NDJSON[i:j], RICH_NDJSON[j:]]) == whole


# -- the full provider path -------------------------------------------------------------------

TOKEN_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(TRICKY + "\n\r\t"), st.characters(codec="utf-8")),
    min_size=1,
    max_size=12,
)


class Pieces(httpx.AsyncByteStream):
    """A response body delivered exactly in these pieces (each one read of the client)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            yield p

    async def aclose(self) -> None:
        self.closed = True


def chunked_by(data: bytes, sizes: list[int]) -> list[bytes]:
    out, i, k = [], 0, 0
    while i < len(data):
        size = sizes[k % len(sizes)] if sizes else len(data)
        out.append(data[i : i + size])
        i += size
        k += 1
    return out


@st.composite
def openai_bodies(draw: st.DrawFn) -> tuple[list[str], bytes]:
    tokens = draw(st.lists(TOKEN_TEXT, min_size=1, max_size=25))
    eol = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\r\r"]))
    ascii_only = draw(st.booleans())

    def frame(obj: Any) -> str:
        return "data: " + json.dumps(obj, ensure_ascii=ascii_only) + eol

    def delta(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"model": "m", "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

    out = [frame(delta({"role": "assistant", "content": draw(st.sampled_from(["", None]))}))]
    for t in tokens:
        if draw(st.integers(0, 6)) == 0:
            out.append(":" + eol)  # keep-alive
        out.append(frame(delta({"content": t})))
    out.append(frame(delta({}, "stop")))
    usage = {"prompt_tokens": 1, "completion_tokens": len(tokens), "total_tokens": 1}
    out.append(frame({"model": "m", "choices": [], "usage": usage}))
    out.append("data: [DONE]" + eol)
    return tokens, "".join(out).encode()


@st.composite
def ollama_bodies(draw: st.DrawFn) -> tuple[list[str], bytes]:
    tokens = draw(st.lists(TOKEN_TEXT, min_size=1, max_size=25))
    ascii_only = draw(st.booleans())
    lines = []
    for t in tokens:
        obj = {"model": "m", "message": {"role": "assistant", "content": t}, "done": False}
        eol = draw(st.sampled_from(["\n", "\r\n"]))
        lines.append(json.dumps(obj, ensure_ascii=ascii_only) + eol)
    final = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
             "done_reason": "stop", "eval_count": len(tokens)}  # fmt: skip
    lines.append(json.dumps(final) + draw(st.sampled_from(["\n", "\r\n", ""])))
    return tokens, "".join(lines).encode()


def stream_text(cls: type[Any], body: list[bytes]) -> tuple[str, str, int, bool]:
    stream = Pieces(body)

    async def go() -> tuple[str, str, int, bool]:
        p = cls(
            "127.0.0.1:9",
            transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=stream)),
            retry=RetryPolicy(max_retries=0),
        )
        try:
            r = await p.stream("m", "hi").collect()
        finally:
            await p.aclose()
        return r.text, r.status, len(r.trace.token_times_ns), stream.closed

    return run_sync(go(), timeout=30)


@fuzz(300)
@given(openai_bodies(), st.lists(st.integers(1, 64), min_size=1, max_size=12))
def test_openai_provider_random_answer_in_random_chunks(
    answer: tuple[list[str], bytes], sizes: list[int]
) -> None:
    tokens, body = answer
    text, status, n_chunks, closed = stream_text(OpenAIProvider, chunked_by(body, sizes))
    assert (text, status, n_chunks) == ("".join(tokens), "ok", len(tokens))
    assert closed


@fuzz(300)
@given(ollama_bodies(), st.lists(st.integers(1, 64), min_size=1, max_size=12))
def test_ollama_provider_random_answer_in_random_chunks(
    answer: tuple[list[str], bytes], sizes: list[int]
) -> None:
    tokens, body = answer
    text, status, n_chunks, closed = stream_text(OllamaProvider, chunked_by(body, sizes))
    assert (text, status, n_chunks) == ("".join(tokens), "ok", len(tokens))
    assert closed


@fuzz(200)
@given(GARBAGE, st.lists(st.integers(1, 64), min_size=1, max_size=12))
def test_provider_on_garbage_body_raises_only_llm_errors(data: bytes, sizes: list[int]) -> None:
    """Whatever the body, a stream ends in a result or an llm_nb error (any other exception
    fails the test), and the response is closed either way."""
    for cls in (OpenAIProvider, OllamaProvider):
        stream = Pieces(chunked_by(data, sizes))

        async def go(cls: type[Any] = cls, stream: Pieces = stream) -> str:
            p = cls(
                "127.0.0.1:9",
                transport=httpx.MockTransport(lambda r: httpx.Response(200, stream=stream)),
                retry=RetryPolicy(max_retries=0),
            )
            s = p.stream("m", "hi")
            try:
                await s.collect()
            except LLMError:
                pass
            finally:
                await p.aclose()
            return s.response.status

        status = run_sync(go(), timeout=30)
        assert status in ("ok", "error") and stream.closed
