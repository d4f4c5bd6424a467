"""The reference server, over real loopback sockets, with aiohttp's client as the raw peer.

Nothing is mocked. A test that waits polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from nexus_reactive.cli import main
from nexus_reactive.errors import ConfigError
from nexus_reactive.messages import AskRequest, AskResponse, Usage
from nexus_reactive.server import STATS_KEY, ReplyCache, ServerStats, count_tokens, create_app
from nexus_reactive.server.dedupe import Compute, Publish

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
    [({"query": 3}, "query"), ({"query": ""}, "query"), ({}, "query"), ("text", "object")],
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


# --- connection lifecycle ----------------------------------------------------------------


async def test_stats_count_connections_and_asks(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    first = await connect(session, server)
    second = await connect(session, server)
    await wait_until(lambda: stats(server).connections_open == 2)
    await ask(first, "a", "1")
    await ask(second, "b", "2")
    await recv(first)
    await recv(second)
    await first.close()
    await wait_until(lambda: stats(server).connections_open == 1)
    assert stats(server) == ServerStats(
        connections_total=2, connections_open=1, asks_received=2, engine_calls=2
    )
    await second.close()
    await wait_until(lambda: stats(server).connections_open == 0)


async def test_closing_the_socket_cancels_its_asks(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine, abandon_after=0)
    ws = await connect(session, server)
    await ask(ws, "never answered", "n")
    await wait_until(lambda: engine.calls == ["never answered"])
    await ws.close()
    await wait_until(lambda: engine.cancelled == 1)
    await wait_until(lambda: stats(server).connections_open == 0)


async def test_shutdown_closes_sockets_with_1001(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    engine = GatedEngine()
    server = await make_server(engine=engine)
    ws = await connect(session, server)
    await ask(ws, "pending", "p")
    await wait_until(lambda: engine.calls == ["pending"])
    receiving = asyncio.create_task(ws.receive(timeout=TIMEOUT))
    await server.close()
    msg = await receiving
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1001
    assert ws.close_code == 1001
    assert engine.cancelled == 1
    assert stats(server).connections_open == 0


# --- configuration -----------------------------------------------------------------------


def test_no_key_anywhere_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        create_app()
    assert "api_keys" in str(info.value)
    assert "NEXUS_API_KEY" in str(info.value)
    with pytest.raises(ConfigError):
        create_app(api_keys=[])
    with pytest.raises(ConfigError):
        create_app(api_keys=["ok", ""])


async def test_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    session: aiohttp.ClientSession,
) -> None:
    monkeypatch.setenv("NEXUS_API_KEY", "from-env")
    server = await aiohttp_server(create_app())
    async with await connect(session, server, key="from-env") as ws:
        await assert_usable(ws)


def test_app_exposes_typed_stats() -> None:
    app = create_app(api_keys=KEY)
    assert isinstance(app, web.Application)
    assert app[STATS_KEY] == ServerStats()


# --- command line ------------------------------------------------------------------------


def test_cli_serve_without_a_key_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NEXUS_API_KEY", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err
    assert "NEXUS_API_KEY" in err


def test_cli_without_a_command_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().err


async def test_cli_serve_answers_and_stops_cleanly_on_sigterm(
    session: aiohttp.ClientSession,
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_API_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nexus_reactive",
        "serve",
        "--port",
        "0",
        "--api-key",
        "k",
        "--log-level",
        "warning",
        "--engine",
        "echo",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        match = re.fullmatch(rb"nexus-reactive server listening on (ws://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        url = match.group(1).decode()
        assert not url.endswith(":0")
        async with session.ws_connect(url, headers={"x-api-key": "k"}) as ws:
            await ask(ws, "from the cli", "c1")
            reply = await recv(ws)
            assert reply["payload"]["answer"] == "You asked: from the cli"
            receiving = asyncio.create_task(ws.receive(timeout=TIMEOUT))
            proc.terminate()
            msg = await receiving
            assert msg.type is WSMsgType.CLOSE
            assert msg.data == 1001
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert out == b""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
