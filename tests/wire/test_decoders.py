"""SSE and NDJSON decoders: framing rules, and the same events however the bytes are split."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_nb._errors import ProtocolError
from llm_nb._wire.ndjson import NDJSONDecoder
from llm_nb._wire.sse import SSEDecoder, SSEEvent


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
