"""ChatResponse text and reasoning grow by appends and are joined when read (see
``_GrowingText``): the same strings as concatenation, whoever reads and whenever."""

from __future__ import annotations

import dataclasses
import pickle
import threading

import httpx

from llm_nb import TextDelta
from llm_nb._types import ChatResponse
from llm_nb._wire.retry import RetryPolicy
from llm_nb.providers import OpenAIProvider


def test_appends_read_as_their_concatenation() -> None:
    r = ChatResponse("openai", "h:1", "m", text="start ")
    pieces = [f"p{i} " for i in range(1000)]
    expected = "start "
    for i, piece in enumerate(pieces):
        r.add_text(piece)
        expected += piece
        if i % 97 == 0:  # reads in between fold the pieces so far; later ones still count
            assert r.text == expected
    r.add_reasoning("think")
    r.add_reasoning("ing")
    assert r.text == expected and r.reasoning == "thinking"
    assert str(r) == expected and r._repr_html_() == f"<p>{expected.strip()}</p>\n"
    r.text = "reset"
    r.add_text("!")
    assert r.text == "reset!" and r.reasoning == "thinking"


def test_record_behaves_as_the_dataclass_it_was() -> None:
    r = ChatResponse("openai", "h:1", "m")
    r.add_text("a")
    r.add_text("b")
    assert r == ChatResponse("openai", "h:1", "m", text="ab")
    assert "text='ab'" in repr(r)
    assert dataclasses.replace(r, model="n").text == "ab"
    back = pickle.loads(pickle.dumps(r))
    assert back.text == "ab" and back == r


def test_a_reader_thread_sees_growing_prefixes_and_loses_nothing() -> None:
    r = ChatResponse("openai", "h:1", "m")
    pieces = [chr(ord("a") + i % 26) * (1 + i % 3) for i in range(50_000)]
    full = "".join(pieces)
    seen: list[str] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.append(r.text)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for piece in pieces:
        r.add_text(piece)
    done.set()
    for t in readers:
        t.join()
    assert r.text == full
    assert len(seen) > 1
    assert all(full.startswith(s) for s in seen)


async def test_streamed_record_text_is_the_deltas_joined() -> None:
    words = [f"w{i} " for i in range(3000)]
    events = "".join(
        f'data: {{"choices":[{{"index":0,"delta":{{"content":"{w}"}}}}]}}\n\n' for w in words
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=events + "data: [DONE]\n\n")

    p = OpenAIProvider(
        "127.0.0.1:9", transport=httpx.MockTransport(handler), retry=RetryPolicy(max_retries=0)
    )
    stream = p.stream("m", "hi")
    got = [d.text async for d in stream if isinstance(d, TextDelta)]
    assert got == words
    assert stream.response.text == "".join(words)
    assert len(stream.response.trace.token_times_ns) == len(words)
