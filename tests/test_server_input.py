"""The reference server under bad input (reported, never fatal) and idempotent asks, over
real loopback sockets, with aiohttp's client as the raw peer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType

from nexus_reactive.messages import AskRequest, AskResponse
from nexus_reactive.server import ReplyCache
from nexus_reactive.server.dedupe import Compute, Publish

from .conftest import KEY, MakeServer
from .test_server import (
    TIMEOUT,
    GatedEngine,
    ask,
    assert_usable,
    connect,
    recv,
    recv_text,
    send,
    stats,
    wait_until,
)

# --- bad input: reported, never fatal ----------------------------------------------------


async def test_malformed_json_is_a_bad_request_and_the_connection_survives(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        for frame in ("{not json", "[1, 2]", '{"type": "ask"}', "null"):
            await ws.send_str(frame)
            reply = await recv(ws)
            assert reply["type"] == "error"
            assert reply["id"] == ""
            assert reply["payload"]["code"] == "bad_request"
            assert reply["payload"]["message"]
        await assert_usable(ws)


@pytest.mark.parametrize(
    ("payload", "mentions"),
    [
        ({"query": 3}, "query"),
        ({"query": ""}, "query"),
        ({"query": " \t\n"}, "only whitespace"),
        ({}, "query"),
        ("text", "object"),
    ],
)
async def test_wrong_payload_is_a_bad_request_carrying_the_id(
    make_server: MakeServer, session: aiohttp.ClientSession, payload: Any, mentions: str
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await send(ws, "ask", "a1", payload)
        reply = await recv(ws)
        assert reply["type"] == "error"
        assert reply["id"] == "a1"
        assert reply["payload"]["code"] == "bad_request"
        assert mentions in reply["payload"]["message"]
        await assert_usable(ws)
    assert stats(server).engine_calls == 1  # only the probe


async def test_ask_with_empty_id_is_a_bad_request(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await ask(ws, "hi", "")
        reply = await recv(ws)
    assert reply["payload"]["code"] == "bad_request"
    assert stats(server).engine_calls == 0


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        ("subscribe", {"topic": "x"}),
        ("response", {"answer": "forged"}),
        ("error", {"code": "internal", "message": "m"}),
        ("challenge", {"challenge": "c"}),
        ("auth_ok", {"pubkey": "p"}),
        ("response_chunk", {"delta": "d", "index": 0}),
    ],
)
async def test_unknown_or_server_only_types_are_unknown_type(
    make_server: MakeServer, session: aiohttp.ClientSession, type_: str, payload: Any
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await send(ws, type_, "t1", payload)
        reply = await recv(ws)
        assert reply["type"] == "error"
        assert reply["id"] == "t1"
        assert reply["payload"]["code"] == "unknown_type"
        assert type_ in reply["payload"]["message"]
        await assert_usable(ws)


async def test_auth_message_is_a_bad_request(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await send(ws, "auth", "c1", {"pubkey": "p", "signature": "s", "challenge": "c"})
        reply = await recv(ws)
        assert reply["id"] == "c1"
        assert reply["payload"]["code"] == "bad_request"
        assert "key-pair" in reply["payload"]["message"]
        await assert_usable(ws)


async def test_binary_frame_is_a_bad_request(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await ws.send_bytes(b'{"type": "ask", "id": "b", "payload": {"query": "q"}}')
        reply = await recv(ws)
        assert reply == {
            "type": "error",
            "id": "",
            "payload": {
                "code": "bad_request",
                "message": "binary frames are not part of the protocol",
            },
        }
        await assert_usable(ws)


async def test_oversized_frame_closes_with_1009_and_the_server_goes_on(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(max_message_size=1024)
    async with await connect(session, server) as ws:
        await ask(ws, "x" * 2048, "big")
        msg = await ws.receive(timeout=TIMEOUT)
        assert msg.type is WSMsgType.CLOSE
        assert ws.close_code == 1009
    await wait_until(lambda: stats(server).connections_open == 0)
    async with await connect(session, server) as ws:
        await assert_usable(ws)
    assert stats(server).connections_total == 2


# --- idempotent asks ---------------------------------------------------------------------


async def test_repeated_id_gets_the_same_reply_without_a_second_engine_call(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await ask(ws, "once", "dup")
        first = await recv_text(ws)
        await ask(ws, "once", "dup")
        second = await recv_text(ws)
    assert first == second
    assert stats(server).engine_calls == 1
    assert stats(server).asks_received == 2
    assert stats(server).asks_replayed == 1


async def test_repeat_while_in_flight_waits_for_the_first_result(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "slow", "dup")
        await ask(ws, "slow", "dup")
        await wait_until(lambda: stats(server).asks_received == 2)
        assert engine.calls == ["slow"]
        engine.gate.set()
        first, second = await recv_text(ws), await recv_text(ws)
    assert first == second
    assert json.loads(first)["id"] == "dup"
    assert engine.calls == ["slow"]
    assert stats(server).engine_calls == 1


async def test_repeat_on_a_new_connection_with_the_same_key_is_replayed(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(api_keys=[KEY, "other-key"])
    async with await connect(session, server) as ws:
        await ask(ws, "q", "dup")
        first = await recv_text(ws)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "dup")
        assert await recv_text(ws) == first
    assert stats(server).engine_calls == 1
    # Another key is another client: the same id is a different question.
    async with await connect(session, server, key="other-key") as ws:
        await ask(ws, "q", "dup")
        await recv(ws)
    assert stats(server).engine_calls == 2


async def test_internal_errors_are_not_remembered(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    failures = [RuntimeError("transient")]

    def engine(request: AskRequest) -> AskResponse:
        if failures:
            raise failures.pop()
        return AskResponse(answer="recovered")

    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "q", "retry-me")
        assert (await recv(ws))["payload"]["code"] == "internal"
        await ask(ws, "q", "retry-me")
        assert (await recv(ws))["payload"]["answer"] == "recovered"
    assert stats(server).engine_calls == 2


async def test_reply_cache_evicts_by_size_and_time() -> None:
    now = [0.0]
    cache = ReplyCache(max_size=2, ttl=10.0, clock=lambda: now[0])
    computed: list[str] = []

    def compute(value: str) -> Compute:
        async def run(publish: Publish) -> tuple[bytes, bool]:
            computed.append(value)
            return value.encode(), True

        return run

    assert await cache.get_or_compute("a", compute("a")) == (b"a", False)
    assert await cache.get_or_compute("a", compute("a2")) == (b"a", True)
    await cache.get_or_compute("b", compute("b"))
    await cache.get_or_compute("c", compute("c"))  # pushes out "a", the least recent
    assert len(cache) == 2
    assert await cache.get_or_compute("a", compute("a3")) == (b"a3", False)
    now[0] = 9.0
    assert await cache.get_or_compute("a", compute("a4")) == (b"a3", True)  # refreshed
    now[0] = 18.0  # "c" last used at 0: expired; "a" last used at 9: kept
    assert len(cache) == 2
    assert await cache.get_or_compute("a", compute("a5")) == (b"a3", True)
    assert len(cache) == 1
    assert computed == ["a", "b", "c", "a3"]


async def test_reply_cache_a_waiter_keeps_the_computation_its_starter_left() -> None:
    cache = ReplyCache(max_size=10, ttl=60.0)
    started, gate = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    def compute(name: str) -> Compute:
        async def run(publish: Publish) -> tuple[bytes, bool]:
            calls.append(name)
            started.set()
            await gate.wait()
            return name.encode(), True

        return run

    first = asyncio.create_task(cache.get_or_compute("k", compute("first")))
    await started.wait()
    waiter = asyncio.create_task(cache.get_or_compute("k", compute("second")))
    await asyncio.sleep(0)  # let the waiter join the first computation
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    gate.set()
    assert await asyncio.wait_for(waiter, TIMEOUT) == (b"first", True)
    assert calls == ["first"]


async def test_reply_cache_abandons_a_computation_nobody_waits_for() -> None:
    cache = ReplyCache(max_size=10, ttl=60.0, abandon_after=0.05)
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def never(publish: Publish) -> tuple[bytes, bool]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    first = asyncio.create_task(cache.get_or_compute("k", never))
    await started.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert cache.computing == 1  # still running, for a resend to join
    await asyncio.wait_for(cancelled.wait(), TIMEOUT)
    await wait_until(lambda: cache.computing == 0)
    assert len(cache) == 0

    async def quick(publish: Publish) -> tuple[bytes, bool]:
        return b"again", True

    assert await cache.get_or_compute("k", quick) == (b"again", False)
    await cache.aclose()
