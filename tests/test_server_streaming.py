"""Streaming answers: ``response_chunk`` frames, then the whole ``response``.

Real loopback sockets with aiohttp's client as the raw peer, plus a few pure tests
of :func:`run_engine`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest

from nexus_reactive.messages import AskRequest, AskResponse
from nexus_reactive.server import EchoEngine
from nexus_reactive.server.engine import run_engine

from .conftest import MakeServer
from .test_server import ask, connect, recv, recv_text, stats, wait_until


async def recv_stream(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Receive chunks until the final ``response`` or ``error``; return both."""
    chunks: list[dict[str, Any]] = []
    while True:
        frame = await recv(ws)
        if frame["type"] != "response_chunk":
            return chunks, frame
        chunks.append(frame)


class GatedStream:
    """A streaming engine that yields ``first``, then waits for its gate, then ``rest``."""

    def __init__(self, first: str = "partial ", rest: str = "answer") -> None:
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()
        self.calls = 0
        self.closed = 0

    async def __call__(self, request: AskRequest) -> AsyncIterator[str]:
        self.calls += 1
        try:
            yield self.first
            await self.gate.wait()
            yield self.rest
        finally:
            self.closed += 1


# --- the wire ----------------------------------------------------------------------------


async def test_echo_engine_streams_words_then_the_whole_answer(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(engine=EchoEngine(stream=True))
    async with await connect(session, server) as ws:
        await ask(ws, "what  is nexus?", "s1")
        chunks, final = await recv_stream(ws)
    assert all(chunk["id"] == "s1" for chunk in chunks)
    assert [chunk["payload"]["index"] for chunk in chunks] == list(range(len(chunks)))
    assert [chunk["payload"]["delta"] for chunk in chunks] == [
        "You ",
        "asked: ",
        "what  ",
        "is ",
        "nexus?",
    ]
    assert final == {
        "type": "response",
        "id": "s1",
        "payload": {
            "answer": "You asked: what  is nexus?",
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
    }
    assert stats(server).chunks_sent == 5


async def test_an_async_generator_function_is_an_engine(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    async def engine(request: AskRequest) -> AsyncIterator[str]:
        yield ""  # empty pieces are skipped and use no index
        for letter in request.query:
            await asyncio.sleep(0)
            yield letter
        yield ""

    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "abc", "g")
        chunks, final = await recv_stream(ws)
    assert [(c["payload"]["index"], c["payload"]["delta"]) for c in chunks] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
    ]
    assert final["payload"]["answer"] == "abc"


async def test_a_coroutine_returning_a_stream_also_streams(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    async def pieces() -> AsyncIterator[str]:
        yield "one "
        yield "two"

    async def engine(request: AskRequest) -> AsyncIterator[str]:
        await asyncio.sleep(0)
        return pieces()

    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "c")
        chunks, final = await recv_stream(ws)
    assert [c["payload"]["delta"] for c in chunks] == ["one ", "two"]
    assert final["payload"]["answer"] == "one two"


async def test_streams_of_different_asks_interleave_each_with_its_own_index(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedStream()
    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "a")
        await ask(ws, "q", "b")
        first = [await recv(ws), await recv(ws)]
        assert sorted(f["id"] for f in first) == ["a", "b"]
        assert all(f["payload"] == {"delta": "partial ", "index": 0} for f in first)
        engine.gate.set()
        rest = [await recv(ws) for _ in range(4)]
    for id_ in ("a", "b"):
        mine = [f for f in rest if f["id"] == id_]
        assert [f["type"] for f in mine] == ["response_chunk", "response"]
        assert mine[0]["payload"] == {"delta": "answer", "index": 1}
        assert mine[1]["payload"]["answer"] == "partial answer"


def _fails_midway() -> Callable[[AskRequest], AsyncIterator[str]]:
    async def engine(request: AskRequest) -> AsyncIterator[str]:
        yield "so far "
        raise RuntimeError("secret internal detail")

    return engine


def _yields_bytes() -> Callable[[AskRequest], AsyncIterator[Any]]:
    async def engine(request: AskRequest) -> AsyncIterator[Any]:
        yield "text "
        yield b"bytes"

    return engine


@pytest.mark.parametrize("make", [_fails_midway, _yields_bytes], ids=["raises", "non-str"])
async def test_a_stream_that_fails_midway_ends_with_an_internal_error(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    make: Callable[[], Callable[[AskRequest], AsyncIterator[Any]]],
) -> None:
    server = await make_server(engine=make())
    async with await connect(session, server) as ws:
        await ask(ws, "q", "bad")
        chunks, final = await recv_stream(ws)
        assert len(chunks) == 1
        assert final["type"] == "error"
        assert final["id"] == "bad"
        assert final["payload"]["code"] == "internal"
        assert "secret" not in final["payload"]["message"]
        # Not remembered: the same id computes again.
        await ask(ws, "q", "bad")
        chunks, final = await recv_stream(ws)
        assert len(chunks) == 1
        assert final["type"] == "error"
    assert stats(server).engine_calls == 2


async def test_a_sync_generator_is_not_an_engine(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    def engine(request: AskRequest) -> Iterator[str]:
        yield "sync"

    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "s")
        chunks, final = await recv_stream(ws)
    assert chunks == []
    assert final["payload"]["code"] == "internal"


# --- idempotency -------------------------------------------------------------------------


async def test_a_repeat_after_the_stream_gets_only_the_final_response(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(engine=EchoEngine(stream=True))
    async with await connect(session, server) as ws:
        await ask(ws, "once", "dup")
        chunks, final = await recv_stream(ws)
        assert len(chunks) == 3
    async with await connect(session, server) as ws:
        await ask(ws, "once", "dup")
        replayed = await recv(ws)  # no chunks this time: the remembered response
    assert replayed == final
    assert stats(server).engine_calls == 1
    assert stats(server).asks_replayed == 1
    assert stats(server).chunks_sent == 3


async def test_a_repeat_while_streaming_waits_for_the_final_response(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedStream()
    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "dup")
        first_chunk = await recv(ws)
        assert first_chunk["payload"] == {"delta": "partial ", "index": 0}
        await ask(ws, "q", "dup")
        await wait_until(lambda: stats(server).asks_received == 2)
        engine.gate.set()
        frames = [await recv_text(ws) for _ in range(3)]
    kinds = [json.loads(f)["type"] for f in frames]
    assert kinds.count("response_chunk") == 1  # the first copy's second chunk, only
    responses = [f for f in frames if json.loads(f)["type"] == "response"]
    assert len(responses) == 2
    assert responses[0] == responses[1]
    assert json.loads(responses[0])["payload"]["answer"] == "partial answer"
    assert engine.calls == 1


async def test_closing_mid_stream_closes_the_engines_stream(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedStream()
    server = await make_server(engine=engine, abandon_after=0)
    ws = await connect(session, server)
    await ask(ws, "q", "abandoned")
    assert (await recv(ws))["type"] == "response_chunk"
    await ws.close()
    await wait_until(lambda: engine.closed == 1)
    await wait_until(lambda: stats(server).connections_open == 0)
    # The abandoned id is not remembered: a retry on a new connection streams again.
    engine.gate.set()
    async with await connect(session, server) as ws:
        await ask(ws, "q", "abandoned")
        chunks, final = await recv_stream(ws)
    assert len(chunks) == 2
    assert final["payload"]["answer"] == "partial answer"
    assert engine.calls == 2


# --- run_engine, without sockets ---------------------------------------------------------


async def test_run_engine_hands_each_piece_to_on_delta_before_asking_for_the_next() -> None:
    log: list[str] = []

    async def engine(request: AskRequest) -> AsyncIterator[str]:
        for piece in ("a", "b"):
            log.append(f"yield {piece}")
            yield piece

    async def on_delta(delta: str) -> None:
        log.append(f"sent {delta}")

    response = await run_engine(engine, AskRequest(query="q"), on_delta)
    assert log == ["yield a", "sent a", "yield b", "sent b"]
    assert response.answer == "ab"
    assert response.usage is not None


async def test_run_engine_without_on_delta_just_joins() -> None:
    response = await run_engine(EchoEngine(stream=True), AskRequest(query="x y"))
    assert response == await run_engine(EchoEngine(), AskRequest(query="x y"))


async def test_run_engine_rejects_other_results() -> None:
    def engine(request: AskRequest) -> Any:
        return 42

    with pytest.raises(TypeError, match="async iterator of str"):
        await run_engine(engine, AskRequest(query="q"))


def test_echo_engine_options() -> None:
    assert repr(EchoEngine()) == "EchoEngine()"
    assert repr(EchoEngine(stream=True, delay=0.5)) == "EchoEngine(stream=True, delay=0.5)"
    assert isinstance(EchoEngine()(AskRequest(query="q")), AskResponse)
    with pytest.raises(ValueError, match="delay"):
        EchoEngine(delay=-1)


async def test_echo_engine_with_a_delay_still_streams_every_word(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(engine=EchoEngine(stream=True, delay=0.001))
    async with await connect(session, server) as ws:
        await ask(ws, "a b", "d")
        chunks, final = await recv_stream(ws)
    assert "".join(c["payload"]["delta"] for c in chunks) == final["payload"]["answer"]
    assert len(chunks) == 4
