"""SSE and NDJSON decoders: framing rules, the same events however the bytes are split, and
bytes that are hard to decode arriving over real sockets on every wire (multi-byte characters
cut between reads, invalid UTF-8, a line over the limit). Random streams: test_decoders_fuzz.py.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_nb._errors import ProtocolError
from llm_nb._stats import Recorder
from llm_nb._wire._lines import MAX_LINE_BYTES
from llm_nb._wire.ndjson import NDJSONDecoder
from llm_nb._wire.sse import SSEDecoder, SSEEvent
from tests.faults import FaultServer, Wire, plays
from tests.faults.checks import FAST, PARTIAL, assert_released, attempt, only_row, wires


def sse_all(data: bytes, cuts: list[int] | None = None) -> list[SSEEvent]:
    dec = SSEDecoder()
    out: list[SSEEvent] = []
    points = sorted(set(cuts or []))
    prev = 0
    for p in [*points, len(data)]:
        out += dec.feed(data[prev:p])
        prev = p
    return out + dec.flush()


STREAM = (
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":{"role":"assistant","content":null}}]}\n\n'
    b'data: {"choices":[{"delta":{"content":"h\xc3\xa9llo \xe2\x9c\x93"}}]}\r\n\r\n'
    b"event: note\ndata: line one\ndata: line two\nid: 7\n\n"
    b"data: [DONE]\n\n"
)


def test_sse_framing() -> None:
    events = sse_all(STREAM)
    assert [e.data for e in events] == [
        '{"choices":[{"delta":{"role":"assistant","content":null}}]}',
        '{"choices":[{"delta":{"content":"héllo ✓"}}]}',
        "line one\nline two",
        "[DONE]",
    ]
    assert events[2].event == "note"
    assert events[2].id == "7"


def test_sse_field_without_space_and_lone_cr() -> None:
    events = sse_all(b"data:a\rdata:b\r\rdata: c\n\n")
    assert [e.data for e in events] == ["a\nb", "c"]


def test_sse_last_event_without_blank_line_is_delivered() -> None:
    assert [e.data for e in sse_all(b"data: tail")] == ["tail"]


def test_sse_huge_line_is_protocol_error() -> None:
    dec = SSEDecoder(max_line_bytes=1000)
    with pytest.raises(ProtocolError, match="exceeded 1000 bytes"):
        dec.feed(b"data: " + b"x" * 2000)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_sse_same_events_for_any_split(cuts: list[int]) -> None:
    assert sse_all(STREAM, cuts) == sse_all(STREAM)


def test_sse_every_single_byte_boundary() -> None:
    whole = sse_all(STREAM)
    for i in range(len(STREAM) + 1):
        assert sse_all(STREAM, [i]) == whole, i


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_sse_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    sse_all(data, [c for c in cuts if c <= len(data)])


NDJSON = (
    b'{"message":{"content":"a\xc3\xa9"},"done":false}\n'
    b"\n"
    b'{"message":{"content":"\xf0\x9f\x98\x80"},"done":false}\r\n'
    b'{"done":true,"eval_count":2}'
)


def nd_all(data: bytes, cuts: list[int]) -> list[object]:
    dec = NDJSONDecoder()
    out: list[object] = []
    prev = 0
    for p in [*sorted(set(cuts)), len(data)]:
        out += dec.feed(data[prev:p])
        prev = p
    return out + dec.flush()


def test_ndjson_lines_and_unterminated_tail() -> None:
    objs = nd_all(NDJSON, [])
    assert objs == [
        {"message": {"content": "aé"}, "done": False},
        {"message": {"content": "😀"}, "done": False},
        {"done": True, "eval_count": 2},
    ]


def test_ndjson_every_byte_boundary() -> None:
    whole = nd_all(NDJSON, [])
    for i in range(len(NDJSON) + 1):
        for j in range(i, len(NDJSON) + 1, 7):
            assert nd_all(NDJSON, [i, j]) == whole


def test_ndjson_malformed_line_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="malformed JSON in NDJSON line"):
        NDJSONDecoder().feed(b'{"a": 1}\n{"b": \n')


def test_ndjson_invalid_utf8_is_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="invalid UTF-8"):
        NDJSONDecoder().feed(b'{"a": "\xff\xfe"}\n')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_ndjson_arbitrary_bytes_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        nd_all(data, [len(data) // 2])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.text(max_size=5), st.text(max_size=10) | st.integers(), max_size=3),
        max_size=6,
    ),
    st.lists(st.integers(0, 2000), max_size=6),
)
def test_ndjson_roundtrip_any_split(objs: list[dict[str, object]], cuts: list[int]) -> None:
    data = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)
    assert nd_all(data, [c for c in cuts if c <= len(data)]) == objs


# -- several whole frames in one read (the fast paths concurrent streams take) -----------------


def _one_by_one(frames: list[bytes], feed: str) -> list[object]:
    dec = SSEDecoder() if feed == "sse" else NDJSONDecoder()
    out: list[object] = []
    for frame in frames:
        out += dec.feed_data(frame) if isinstance(dec, SSEDecoder) else dec.feed(frame)
    return out


@pytest.mark.parametrize(
    "frames",
    [
        [b'data: {"n":1}\n\n', b'data: {"n":2}\n\n', b"data: [DONE]\n\n"],
        [b'data: {"n":1}\n\n', b"event: note\ndata: x\n\n", b'data: {"n":3}\n\n'],
        [b'data: {"n":1}\n\n', b": keep-alive\n\n", b'data: {"n":3}\n\n'],
        [b'data: {"n":1}\n\n', b"data: a\ndata: b\n\n", b'data: {"n":3}\n\n'],
        [b'data: {"n":1}\n\n', b"\n", b'data: "\xff"\n\n'],
    ],
)
def test_sse_several_events_in_one_read_equal_one_by_one(frames: list[bytes]) -> None:
    dec = SSEDecoder()
    assert dec.feed_data(b"".join(frames)) == _one_by_one(frames, "sse")
    assert dec.feed_data(b'data: {"after":1}\n\n') == ['{"after":1}']  # state left clean


def test_sse_several_events_after_a_partial_line_wait_for_it() -> None:
    dec = SSEDecoder()
    assert dec.feed_data(b'data: {"n":') == []
    assert dec.feed_data(b'1}\n\ndata: {"n":2}\n\n') == ['{"n":1}', '{"n":2}']


@pytest.mark.parametrize(
    "frames",
    [
        [b'{"n":1}\n', b'{"n":2}\n', b'{"done":true}\n'],
        [b'{"n":1}\n', b"  \n", b'{"n":2}\n'],
        [b'{"n":1}\n', b' {"n":2}\n'],  # leading space: the general JSON path
    ],
)
def test_ndjson_several_lines_in_one_read_equal_one_by_one(frames: list[bytes]) -> None:
    assert NDJSONDecoder().feed(b"".join(frames)) == _one_by_one(frames, "ndjson")


@pytest.mark.parametrize("blank", [b"\xc2\xa0\n", b'{"a":"\xff"}\n', b'{"a":\n'])
def test_ndjson_bad_line_among_several_is_a_protocol_error(blank: bytes) -> None:
    """Whitespace that is not ASCII is not a blank line, on the multi-line path too."""
    with pytest.raises(ProtocolError):
        NDJSONDecoder().feed(b'{"n":1}\n' + blank)
    with pytest.raises(ProtocolError):
        _one_by_one([b'{"n":1}\n', blank], "ndjson")


# -- bytes that are hard to decode ----------------------------------------------------------

SPLIT_TOKENS = ["é", "😀", "中文", " ✓ ok", "👩\u200d💻", "🇫🇷", "ß"]


def byte_split_frames(wire: Wire, tokens: list[str]) -> list[bytes]:
    """Every token frame cut at every byte of its (multi-byte) text."""
    out = [wire.first()] if wire.first() else []
    for t in tokens:
        frame = wire.token(t)
        raw = t.encode()
        start = frame.index(raw)
        out.append(frame[:start])
        out += [raw[i : i + 1] for i in range(len(raw))]
        out.append(frame[start + len(raw) :])
    out.append(wire.finish(len(tokens)))
    return out


@wires
async def test_multibyte_characters_split_across_reads(wire: Wire, rec: Recorder) -> None:
    frames = byte_split_frames(wire, SPLIT_TOKENS)
    with FaultServer(plays.raw_frames(wire, frames, delay_s=0.003)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, s = await attempt(p)
        assert err is None, err
        assert s.response.text == "".join(SPLIT_TOKENS)
        assert "\ufffd" not in s.response.text
        row = only_row(rec)
        assert row["status"] == "ok" and rec.text(row["call_id"]) == "".join(SPLIT_TOKENS)
        await assert_released(srv, p, pooled_ok=True)


@wires
async def test_invalid_utf8(wire: Wire, rec: Recorder) -> None:
    """SSE decodes bytes with replacement (the answer goes on, with U+FFFD); an NDJSON line
    with invalid UTF-8 is a ProtocolError that keeps what came before. Neither crashes."""
    frames = [
        wire.first(),
        wire.token("ok "),
        wire.raw_token(b"ab\xffcd"),  # a byte that is never valid UTF-8
        wire.raw_token(b"\xe4\xb8 x"),  # a 3-byte character cut after 2 bytes
        wire.token(" end"),
        wire.finish(4),
    ]
    with FaultServer(plays.raw_frames(wire, [f for f in frames if f])) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, s = await attempt(p)
        row = only_row(rec)
        if wire.name == "ollama":
            assert isinstance(err, ProtocolError) and "invalid UTF-8" in str(err)
            assert err.partial is not None and err.partial.text == "ok "
            assert (row["status"], row["error_type"]) == ("error", "ProtocolError")
        else:
            assert err is None, err
            assert s.response.text == "ok ab\ufffdcd\ufffd x end"
            assert row["status"] == "ok"
        assert rec.text(row["call_id"]) == s.response.text
        await assert_released(srv, p, pooled_ok=err is None)


@pytest.fixture
def small_max_line(monkeypatch: pytest.MonkeyPatch) -> int:
    """Decoders with a 256 KiB line limit. The providers construct ``SSEDecoder()`` and
    ``NDJSONDecoder()`` without arguments, and the default is bound when the functions are
    defined, so patching ``_lines.MAX_LINE_BYTES`` would change nothing: patch the defaults."""
    limit = 256 * 1024
    monkeypatch.setattr(SSEDecoder.__init__, "__defaults__", (limit,))
    monkeypatch.setattr(NDJSONDecoder.__init__, "__defaults__", (limit,))
    return limit


@wires
async def test_huge_line_is_protocol_error(wire: Wire, rec: Recorder, small_max_line: int) -> None:
    with FaultServer(plays.huge_line(wire, 3, 4 * small_max_line)) as srv:
        p = wire.provider(srv.url, retry=FAST)
        err, _ = await attempt(p)
        assert isinstance(err, ProtocolError), repr(err)
        assert f"exceeded {small_max_line} bytes" in str(err)
        assert err.partial is not None and err.partial.text == PARTIAL
        row = only_row(rec)
        assert (row["status"], row["error_type"]) == ("error", "ProtocolError")
        assert rec.text(row["call_id"]) == PARTIAL
        assert srv.wait_disconnects(1, 3)  # the server was still sending: it saw us go
        await assert_released(srv, p)


def test_providers_decoders_default_to_the_real_limit() -> None:
    """What the fixture above patches: the limit providers get when they construct their
    decoders without arguments (16 MiB). Not exercised over the wire at full size: the
    splitter re-joins its buffer on every read, so a 16 MiB line costs seconds of CPU."""
    assert SSEDecoder.__init__.__defaults__ == (MAX_LINE_BYTES,)
    assert NDJSONDecoder.__init__.__defaults__ == (MAX_LINE_BYTES,)
    assert MAX_LINE_BYTES == 16 * 1024 * 1024
