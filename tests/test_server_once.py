"""The server never computes an answer twice, and never sends one the client cannot take.

Real loopback sockets: aiohttp's client as the raw peer, and the library's own client
for the end-to-end case of an answer over the client's limit.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from nexus_reactive import ServerError, WebSocketService
from nexus_reactive.messages import AskRequest, AskResponse

from .conftest import KEY, MakeServer, ServerFactory
from .test_server import GatedEngine, ask, connect, recv, recv_text, stats, wait_until
from .test_server_streaming import GatedStream, recv_stream


async def test_a_resend_on_a_second_connection_joins_the_answer_in_progress(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine)
    async with await connect(session, server) as first, await connect(session, server) as second:
        await ask(first, "slow", "dup")
        await wait_until(lambda: engine.calls == ["slow"])
        await ask(second, "slow", "dup")
        await wait_until(lambda: stats(server).asks_received == 2)
        engine.gate.set()
        one, two = await recv_text(first), await recv_text(second)
    assert one == two
    assert engine.calls == ["slow"]
    assert stats(server).engine_calls == 1
    assert stats(server).asks_replayed == 1


async def test_a_resend_after_the_first_connection_died_joins_the_answer(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine)  # abandon_after: the default, 30 s
    first = await connect(session, server)
    await ask(first, "slow", "dup")
    await wait_until(lambda: engine.calls == ["slow"])
    await first.close()  # the client lost its connection mid-answer
    await wait_until(lambda: stats(server).connections_open == 0)
    assert engine.cancelled == 0  # still computing, for the resend
    async with await connect(session, server) as second:
        await ask(second, "slow", "dup")
        await wait_until(lambda: stats(server).asks_received == 2)
        engine.gate.set()
        reply = await recv(second)
    assert reply["id"] == "dup"
    assert reply["payload"]["answer"] == "answer to slow"
    assert engine.calls == ["slow"]
    assert stats(server).engine_calls == 1


async def test_a_joined_stream_gets_the_chunks_so_far_then_the_rest(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedStream()
    server = await make_server(engine=engine)
    async with await connect(session, server) as first, await connect(session, server) as second:
        await ask(first, "q", "dup")
        assert (await recv(first))["payload"] == {"delta": "partial ", "index": 0}
        await ask(second, "q", "dup")
        assert (await recv(second))["payload"] == {"delta": "partial ", "index": 0}
        engine.gate.set()
        for ws in (first, second):
            chunks, final = await recv_stream(ws)
            assert [c["payload"] for c in chunks] == [{"delta": "answer", "index": 1}]
            assert final["payload"]["answer"] == "partial answer"
    assert engine.calls == 1


async def test_an_answer_over_the_servers_limit_is_refused_once_with_too_large(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    def engine(request: AskRequest) -> AskResponse:
        return AskResponse(answer="x" * 5000 if request.query == "everything" else "small")

    server = await make_server(engine=engine, max_message_size=2000)
    async with await connect(session, server) as ws:
        await ask(ws, "everything", "big")
        reply = await recv(ws)
        assert reply["type"] == "error" and reply["id"] == "big"
        assert reply["payload"]["code"] == "too_large"
        assert "2000 bytes" in reply["payload"]["message"]
        await ask(ws, "small?", "probe")  # the connection goes on
        assert (await recv(ws))["type"] == "response"
    assert stats(server).too_large == 1
    assert stats(server).connections_total == 1


async def test_the_client_gets_too_large_for_its_own_limit_and_does_not_reconnect(
    start_nexus: ServerFactory,
) -> None:
    calls: list[str] = []

    async def slow_and_huge(request: AskRequest) -> AskResponse:
        calls.append(request.query)
        await asyncio.sleep(0.05)
        if request.query == "tell me everything":
            return AskResponse(answer="y" * 200_000)
        return AskResponse(answer="yes")

    nexus = await start_nexus(api_keys=KEY, engine=slow_and_huge)
    # The client announces 64 KiB (x-max-message-size); the server's own limit is 4 MiB.
    async with WebSocketService(nexus.config(max_message_size=65_536)) as service:
        with pytest.raises(ServerError) as info:
            await service.ask("tell me everything")
        assert info.value.code == "too_large"
        assert (await service.ask("still there?")).answer == "yes"
    assert nexus.stats.connections_total == 1  # no 1009, no reconnect, no replay loop
    assert calls.count("tell me everything") == 1
    assert nexus.stats.too_large >= 1
