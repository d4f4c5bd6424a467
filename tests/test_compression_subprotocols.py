"""permessage-deflate, subprotocols and a per-attempt URL, over real loopback sockets,
with the bad input of each: a compression bomb, a malformed deflate stream, a server
that chooses no subprotocol or one we did not offer, a URL provider that fails."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import NexusConnectionError, NexusError, WebSocketConfig, WebSocketService

from .conftest import KEY, Nexus, client_config
from .faults import wait_for
from .resilience_servers import Conn, ScriptServer, start_script_server

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@pytest.fixture
async def script_server(aiohttp_server: Any) -> Callable[..., Awaitable[ScriptServer]]:
    async def start(script: Callable[[Conn], Awaitable[None]], **kw: Any) -> ScriptServer:
        return await start_script_server(aiohttp_server, script, **kw)

    return start


def errors_of(service: WebSocketService) -> list[NexusError]:
    errors: list[NexusError] = []
    service.errors.subscribe(errors.append)
    return errors


@dataclass(eq=False)
class RawServer:
    """A hand-written WebSocket server: it answers the upgrade with ``headers`` added,
    then writes ``after`` (raw frame bytes) and holds the socket until the client goes."""

    headers: dict[str, str]
    after: bytes = b""
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            self.requests.append(head)
            self.connections += 1
            key = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
            lines = [
                "HTTP/1.1 101 Switching Protocols",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Accept: {accept}",
                "x-nexus-auth: none",
                *(f"{k}: {v}" for k, v in self.headers.items()),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + self.after)
            await writer.drain()
            while await reader.read(4096):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def config(self, **options: Any) -> WebSocketConfig:
        return client_config(f"ws://127.0.0.1:{self.port}/", **options)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


# -- compression ----------------------------------------------------------------------


@pytest.mark.parametrize("compression", [True, False])
async def test_compression_is_offered_and_used_when_asked(
    script_server: Any, compression: bool
) -> None:
    offers: list[str | None] = []
    compressed: list[bool] = []

    async def script(conn: Conn) -> None:
        offers.append(conn.request.headers.get("Sec-WebSocket-Extensions"))
        compressed.append(bool(conn.ws.compress))
        ask = await conn.next_ask()
        await conn.answer(ask, "x" * 10_000)
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config(compression=compression)) as service:
        assert (await service.ask("big answer")).answer == "x" * 10_000
    assert compressed == [compression]
    assert (offers[0] is not None and "permessage-deflate" in offers[0]) is compression


async def test_the_reference_server_accepts_compression(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config(compression=True)) as service:
        assert (await service.ask("deflated")).answer
        transport = service._connection.sender._transport  # type: ignore[attr-defined]
        assert transport.compressed


async def test_a_compression_bomb_is_refused_and_only_the_connection_is_lost(
    script_server: Any,
) -> None:
    limit = 64 * 1024
    bomb = json.dumps({"type": "response", "id": "x", "payload": {"answer": "a" * 2**20}})

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        if conn.index == 0:
            await conn.ws.send_str(bomb)  # ~1 KiB on the wire, 1 MiB inflated
            await conn.drain()
        else:
            await conn.answer(ask)
            await conn.drain()

    server = await script_server(script)
    config = server.config(compression=True, max_message_size=limit)
    async with WebSocketService(config) as service:
        errors = errors_of(service)
        answer = await service.ask("detonate")  # re-sent on the next connection
        assert answer.answer == "re: detonate"
    assert server.connections == 2
    closes = [e for e in errors if isinstance(e, NexusConnectionError)]
    assert closes and closes[0].close_code == 1009 and closes[0].retryable
    assert "max_message_size once decompressed" in str(closes[0])
    asks = server.asks()
    assert len(asks) == 2 and asks[0]["id"] == asks[1]["id"]


async def test_a_malformed_deflate_stream_is_a_clear_error_then_a_reconnect() -> None:
    # A text frame with RSV1 (compressed) whose payload is no deflate data.
    junk = b"\xff\xfe\xfd\xfc\xfb"
    frame = bytes([0xC1, len(junk)]) + junk
    server = await RawServer({"Sec-WebSocket-Extensions": "permessage-deflate"}, frame).start()
    try:
        service = WebSocketService(server.config(compression=True, max_reconnect_attempts=1))
        errors = errors_of(service)
        await service.connect()  # the upgrade succeeds; the first frame is the bad one
        await wait_for(lambda: server.connections >= 2 and len(errors) >= 2)
        await service.close()
    finally:
        await server.close()
    first = errors[0]
    assert isinstance(first, NexusConnectionError) and first.retryable
    assert "invalid compressed frame" in str(first) or "decompress" in str(first).lower()


def test_compression_defaults_off() -> None:
    # The measurement behind it: bench/README.md (python -m bench.compression).
    assert WebSocketConfig().compression is False


# -- subprotocols ---------------------------------------------------------------------


async def test_the_negotiated_subprotocol_is_on_the_state(script_server: Any) -> None:
    offered: list[str | None] = []

    async def script(conn: Conn) -> None:
        offered.append(conn.request.headers.get("Sec-WebSocket-Protocol"))
        await conn.answer(await conn.next_ask())
        await conn.drain()

    server = await script_server(script, ws_options={"protocols": ["nexus.v1", "nexus.v2"]})
    config = server.config(subprotocols=["nexus.v3", "nexus.v2"])
    async with WebSocketService(config) as service:
        assert service.state.value.subprotocol == "nexus.v2"
        assert "subprotocol nexus.v2" in str(service.state.value)
        await service.ask("v2")
    assert offered == ["nexus.v3,nexus.v2"]
    assert service.state.value.subprotocol is None  # not connected any more


async def test_a_server_that_picks_none_of_ours_is_fatal(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.drain()

    server = await script_server(script, ws_options={"protocols": ["graphql-ws"]})
    service = WebSocketService(server.config(subprotocols=["nexus.v2"]))
    with pytest.raises(NexusConnectionError, match="accepted none of the subprotocols") as info:
        await service.connect()
    assert service.state.value.failed and server.connections == 1
    await service.close()
    assert not info.value.retryable and "nexus.v2" in str(info.value)


@pytest.mark.parametrize("offered", [["nexus.v2"], []])
async def test_a_server_that_claims_a_subprotocol_we_did_not_offer_is_fatal(
    offered: list[str],
) -> None:
    server = await RawServer({"Sec-WebSocket-Protocol": "evil.v1"}).start()
    try:
        service = WebSocketService(server.config(subprotocols=offered))
        with pytest.raises(NexusConnectionError, match="did not offer") as info:
            await service.connect()
        await service.close()
    finally:
        await server.close()
    assert not info.value.retryable and "'evil.v1'" in str(info.value)
    assert server.connections == 1


@pytest.mark.parametrize("value", ["nexus.v2", ["a b"], ["a,b"], [""], ["x", "x"], [1], None])
def test_bad_subprotocols_are_config_errors(value: Any) -> None:
    with pytest.raises(NexusError, match="subprotocols"):
        WebSocketConfig(subprotocols=value)


# -- a URL per attempt ----------------------------------------------------------------


async def test_a_url_provider_is_called_once_per_attempt(script_server: Any) -> None:
    tokens: list[str] = []

    async def script(conn: Conn) -> None:
        tokens.append(conn.request.query["token"])
        await conn.answer(await conn.next_ask())
        if conn.index == 0:
            conn.abort()
        else:
            await conn.drain()

    server = await script_server(script)
    calls: list[str] = []

    async def fresh_url() -> str:
        calls.append(f"t{len(calls)}")
        return f"{server.url}?token={calls[-1]}"

    async with WebSocketService(server.config(url=fresh_url)) as service:
        await service.ask("first")
        await wait_for(lambda: server.connections == 2 and service.state.value.connected)
        await service.ask("second")
        assert "<callable>" in repr(service.config) and "token" not in repr(service)
    assert tokens == ["t0", "t1"] and calls == tokens


async def test_a_sync_url_provider_that_raises_once_is_retried(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.answer(await conn.next_ask())
        await conn.drain()

    server = await script_server(script)
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(f"token service down ({server.url}?token=leaked)")
        return server.url

    async with WebSocketService(server.config(url=flaky)) as service:
        errors = errors_of(service)
        assert (await service.ask("retried")).answer
    assert calls == 2
    assert errors == [] or all("leaked" not in str(e) for e in errors)


async def test_a_url_provider_returning_a_bad_url_is_fatal_and_redacted() -> None:
    service = WebSocketService(
        client_config("ws://127.0.0.1:1/", url=lambda: "http://127.0.0.1:1/?token=leak")
    )
    with pytest.raises(NexusConnectionError, match="ws:// or wss://") as info:
        await service.connect()
    await service.close()
    assert not info.value.retryable
    assert "?token=<redacted>" in str(info.value) and "leak" not in str(info.value)


def test_a_query_is_redacted_in_the_repr() -> None:
    config = WebSocketConfig("wss://h.example/ws?token=abc123&room=7", api_key=KEY)
    assert "url='wss://h.example/ws?token=<redacted>&room=<redacted>'" in repr(config)
    assert config.shown_url == "wss://h.example/ws?token=<redacted>&room=<redacted>"
    assert "abc123" not in repr(config)
    assert config.url.endswith("token=abc123&room=7")  # the real one is unchanged


async def test_a_compressed_connection_writes_batches_frame_by_frame(aiohttp_server: Any) -> None:
    from nexus_reactive.transport import open_session, open_transport

    received: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with open_session() as session:
        transport = await open_transport(
            session, f"ws://127.0.0.1:{server.port}/", headers={}, compression=True
        )
        # aiohttp compresses in send_frame: the one-write batch path would skip that.
        assert transport.compressed and transport._batcher is None
        frames = [json.dumps({"n": n, "pad": "p" * 200}).encode() for n in range(50)]
        await transport.send_batch(frames)
        await wait_for(lambda: len(received) == 50)
        await transport.close()
    assert received == [f.decode() for f in frames]
