"""The reference server, over real loopback sockets, with aiohttp's client as the raw peer.

Nothing is mocked. A test that waits polls a condition with a deadline. This file: the
helpers, the handshake and asks; bad input and idempotent asks: test_server_input.py;
the lifecycle, configuration and command line: test_server_lifecycle.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from nexus_reactive.messages import AskRequest, AskResponse, Usage
from nexus_reactive.server import STATS_KEY, ServerStats, count_tokens

from .conftest import KEY, MakeServer
from .waiting import EVENTUALLY, wait_for

TIMEOUT = EVENTUALLY  # for a frame that must come


# --- helpers -----------------------------------------------------------------------------


async def connect(
    session: aiohttp.ClientSession, server: TestServer, key: str = KEY
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(server.make_url("/"), headers={"x-api-key": key})


def stats(server: TestServer) -> ServerStats:
    app = server.app
    assert app is not None
    return app[STATS_KEY]


async def send(ws: aiohttp.ClientWebSocketResponse, type_: str, id_: str, payload: Any) -> None:
    await ws.send_str(json.dumps({"type": type_, "id": id_, "payload": payload}))


async def ask(ws: aiohttp.ClientWebSocketResponse, query: str, id_: str) -> None:
    await send(ws, "ask", id_, {"query": query})


async def recv_text(ws: aiohttp.ClientWebSocketResponse) -> str:
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type is WSMsgType.TEXT, msg
    assert isinstance(msg.data, str)
    return msg.data


async def recv(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    message = json.loads(await recv_text(ws))
    assert isinstance(message, dict)
    return message


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` until it holds; fail after ``EVENTUALLY`` seconds."""
    await wait_for(condition, interval=0.005)


async def assert_usable(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ask(ws, "still there?", "probe")
    reply = await recv(ws)
    assert reply["type"] == "response"
    assert reply["id"] == "probe"


class GatedEngine:
    """An async engine that answers only once its gate opens (per query, or all)."""

    def __init__(self, gated: set[str] | None = None) -> None:
        self.gate = asyncio.Event()
        self.gated = gated
        self.calls: list[str] = []
        self.cancelled = 0

    async def __call__(self, request: AskRequest) -> AskResponse:
        self.calls.append(request.query)
        if self.gated is None or request.query in self.gated:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        return AskResponse(answer=f"answer to {request.query}")


# --- handshake authentication ------------------------------------------------------------

UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


async def test_missing_key_is_refused_with_401(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await session.ws_connect(server.make_url("/"))
    assert info.value.status == 401
    async with session.get(server.make_url("/"), headers=UPGRADE_HEADERS) as resp:
        assert resp.status == 401
        assert "missing" in await resp.text()
    assert stats(server).connections_total == 0


async def test_wrong_key_is_refused_with_401_before_upgrading(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await connect(session, server, key="not-the-key")
    assert info.value.status == 401
    headers = {**UPGRADE_HEADERS, "x-api-key": "wrong-secret-value"}
    async with session.get(server.make_url("/"), headers=headers) as resp:
        assert resp.status == 401
        assert "Sec-WebSocket-Accept" not in resp.headers
        body = await resp.text()
    assert "wrong-secret-value" not in body
    assert KEY not in body
    assert stats(server).connections_total == 0


async def test_any_of_several_keys_is_accepted(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(api_keys=["first", "second"])
    for key in ("first", "second"):
        async with await connect(session, server, key=key) as ws:
            await assert_usable(ws)
    assert stats(server).connections_total == 2


async def test_valid_key_without_upgrade_is_a_400(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with session.get(server.make_url("/"), headers={"x-api-key": KEY}) as resp:
        assert resp.status == 400


# --- asks --------------------------------------------------------------------------------


async def test_ask_gets_a_response_with_its_id_and_usage(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await ask(ws, "hello there world", "q1")
        reply = await recv(ws)
    assert reply == {
        "type": "response",
        "id": "q1",
        "payload": {
            "answer": "You asked: hello there world",
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        },
    }


def _sync_upper(request: AskRequest) -> AskResponse:
    return AskResponse(answer=request.query.upper(), context="sync")


async def _async_upper(request: AskRequest) -> AskResponse:
    await asyncio.sleep(0)
    return AskResponse(answer=request.query.upper(), context="async")


@pytest.mark.parametrize("engine", [_sync_upper, _async_upper], ids=["sync", "async"])
async def test_sync_and_async_engines_get_usage_counted(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    engine: Callable[[AskRequest], Any],
) -> None:
    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "two words", "q")
        reply = await recv(ws)
    payload = reply["payload"]
    assert payload["answer"] == "TWO WORDS"
    assert payload["context"] in {"sync", "async"}
    assert payload["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert stats(server).engine_calls == 1


async def test_usage_given_by_the_engine_is_kept(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    usage = Usage(prompt_tokens=7, completion_tokens=11, total_tokens=18)
    server = await make_server(engine=lambda r: AskResponse(answer="x", usage=usage))
    async with await connect(session, server) as ws:
        await ask(ws, "anything", "q")
        reply = await recv(ws)
    assert reply["payload"]["usage"] == {
        "prompt_tokens": 7,
        "completion_tokens": 11,
        "total_tokens": 18,
    }


def test_count_tokens_splits_on_whitespace() -> None:
    assert count_tokens("") == 0
    assert count_tokens("  one\ttwo\nthree  ") == 3


async def test_engine_exception_is_an_internal_error_and_the_connection_survives(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    def engine(request: AskRequest) -> AskResponse:
        if request.query == "boom":
            raise RuntimeError("secret internal detail")
        return AskResponse(answer="fine")

    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "boom", "bad")
        reply = await recv(ws)
        assert reply["type"] == "error"
        assert reply["id"] == "bad"
        assert reply["payload"]["code"] == "internal"
        assert "secret" not in reply["payload"]["message"]
        await assert_usable(ws)


async def test_engine_returning_the_wrong_type_is_an_internal_error(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(engine=lambda r: {"answer": "a dict"})
    async with await connect(session, server) as ws:
        await ask(ws, "q", "x")
        reply = await recv(ws)
    assert reply["payload"]["code"] == "internal"


async def test_answers_come_back_out_of_order(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine(gated={"slow"})
    server = await make_server(engine=engine)
    async with await connect(session, server) as ws:
        await ask(ws, "slow", "s")
        await ask(ws, "fast", "f")
        first = await recv(ws)
        assert first["id"] == "f"
        assert first["payload"]["answer"] == "answer to fast"
        engine.gate.set()
        second = await recv(ws)
        assert second["id"] == "s"
        assert second["payload"]["answer"] == "answer to slow"
