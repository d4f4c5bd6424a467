"""Tests for the fault-injection proxy in ``tests/faults.py`` (real loopback sockets)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from .faults import FaultProxy
from .waiting import EVENTUALLY, wait_for

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class EchoServer:
    """Tiny asyncio echo server on loopback that tracks its connections and tasks."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.port = 0
        self.received = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def active(self) -> int:
        return len(self.writers)

    def push(self, data: bytes) -> None:
        """Send ``data`` unprompted to every connected client (server push)."""
        for writer in self.writers:
            writer.write(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:  # handlers then see EOF and finish on their own
            writer.transport.abort()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), EVENTUALLY)
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    async with FaultProxy("127.0.0.1", echo.port) as p:
        yield p


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[int], Awaitable[Connection]]]:
    """Open client connections that are all closed at teardown."""
    writers: list[asyncio.StreamWriter] = []

    async def _connect(port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        return reader, writer

    yield _connect
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Read until EOF or reset; return the bytes received before that."""
    data = bytearray()
    async with asyncio.timeout(EVENTUALLY):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return bytes(data)
            if not chunk:
                return bytes(data)
            data += chunk


async def roundtrip(conn: Connection, payload: bytes) -> bytes:
    reader, writer = conn
    writer.write(payload)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(len(payload)), EVENTUALLY)


async def test_forwards_both_ways(
    proxy: FaultProxy, echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    conn = await connect(proxy.port)
    assert await roundtrip(conn, b"hello") == b"hello"
    big = bytes(range(256)) * 8192  # 2 MiB, many 64 KiB chunks both ways
    assert await roundtrip(conn, big) == big
    assert proxy.connections == 1
    assert proxy.open_connections == 1
    assert echo.active == 1

    conn[1].close()  # client closes: the proxy propagates it and forgets the connection
    await wait_for(lambda: proxy.open_connections == 0 and echo.active == 0)
    assert proxy.connections == 1
    assert proxy.url() == f"ws://127.0.0.1:{proxy.port}/"
    assert proxy.url("/ws") == f"ws://127.0.0.1:{proxy.port}/ws"


async def test_server_close_propagates_eof(
    proxy: FaultProxy, echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"x") == b"x"
    await echo.close()  # server side goes away gracefully -> client sees EOF
    assert await read_until_closed(reader) == b""
    writer.close()
    await wait_for(lambda: proxy.open_connections == 0)


async def test_cut_resets_client_and_upstream(
    proxy: FaultProxy, echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"ping") == b"ping"

    await proxy.cut()
    assert proxy.open_connections == 0
    with contextlib.suppress(ConnectionResetError):
        assert await asyncio.wait_for(reader.read(100), EVENTUALLY) == b""
    await wait_for(lambda: echo.active == 0)  # upstream side closed too

    # New connections are still accepted and forwarded.
    conn2 = await connect(proxy.port)
    assert await roundtrip(conn2, b"again") == b"again"
    assert proxy.connections == 2


async def test_cut_sends_rst(
    proxy: FaultProxy, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"ping") == b"ping"
    await proxy.cut()
    with pytest.raises(ConnectionResetError):  # a RST, not a clean FIN
        await asyncio.wait_for(reader.read(100), EVENTUALLY)


async def test_blackhole_swallows_then_resumes(
    proxy: FaultProxy, echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"before") == b"before"
    received = echo.received

    proxy.blackhole()
    writer.write(b"lost-upstream")
    echo.push(b"lost-downstream")
    with pytest.raises(TimeoutError):  # watched for 0.3 s: a slow machine only watches longer
        await asyncio.wait_for(reader.read(100), 0.3)
    assert echo.received == received  # nothing reached the server either
    assert proxy.open_connections == 1  # sockets stay open
    assert echo.active == 1
    assert not reader.at_eof()

    proxy.blackhole(False)
    assert await roundtrip((reader, writer), b"after") == b"after"  # swallowed data is lost
    assert echo.received == received + len(b"after")


async def test_refuse_resets_new_connections(
    proxy: FaultProxy, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    existing = await connect(proxy.port)
    proxy.refuse()
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        # The TCP handshake completes (port open), then the connection is reset.
        await roundtrip(await connect(proxy.port), b"hi")
    assert proxy.refused_connections == 1
    assert proxy.connections == 1
    assert await roundtrip(existing, b"still") == b"still"  # live connections unaffected

    proxy.refuse(False)
    assert await roundtrip(await connect(proxy.port), b"back") == b"back"
    assert proxy.connections == 2


async def test_stop_and_resume_listening_same_port(
    proxy: FaultProxy, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    port = proxy.port
    existing = await connect(port)
    await proxy.stop_listening()
    with pytest.raises(ConnectionRefusedError):
        await connect(port)
    assert await roundtrip(existing, b"alive") == b"alive"

    await proxy.resume_listening()
    assert proxy.port == port
    assert await roundtrip(await connect(port), b"back") == b"back"
    assert proxy.connections == 2


async def test_latency_delays_each_direction_in_order(
    proxy: FaultProxy, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"warm") == b"warm"
    proxy.latency = 0.15
    loop = asyncio.get_running_loop()

    start = loop.time()
    assert await roundtrip((reader, writer), b"slow") == b"slow"
    assert loop.time() - start >= 2 * 0.15 - 0.01  # delayed upstream and downstream

    parts = [f"<{i}>".encode() for i in range(50)]
    start = loop.time()
    for part in parts:
        writer.write(part)
        await writer.drain()
    payload = b"".join(parts)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), EVENTUALLY) == payload
    assert loop.time() - start >= 2 * 0.15 - 0.01

    proxy.latency = 0.0
    assert await roundtrip((reader, writer), b"fast") == b"fast"


async def test_drop_after_truncates_downstream(
    proxy: FaultProxy, echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    reader, writer = await connect(proxy.port)
    assert await roundtrip((reader, writer), b"ok") == b"ok"
    proxy.drop_after(5)
    writer.write(b"0123456789")
    assert await read_until_closed(reader) == b"01234"
    await wait_for(lambda: proxy.open_connections == 0 and echo.active == 0)

    # One-shot: later connections are not truncated.
    assert await roundtrip(await connect(proxy.port), b"0123456789") == b"0123456789"


async def test_close_awaits_everything(
    echo: EchoServer, connect: Callable[[int], Awaitable[Connection]]
) -> None:
    before = asyncio.all_tasks()
    async with FaultProxy("127.0.0.1", echo.port) as proxy:
        conns = [await connect(proxy.port) for _ in range(3)]
        for conn in conns:
            assert await roundtrip(conn, b"x") == b"x"
        proxy.latency = 1.0
        conns[0][1].write(b"in flight")  # queued behind the latency when we close
        proxy.blackhole()
        conns[1][1].write(b"swallowed")
        await wait_for(lambda: proxy.open_connections == 3)
        port = proxy.port
    assert proxy.open_connections == 0
    assert asyncio.all_tasks() - before - echo.tasks == set()
    for reader, _ in conns:
        assert await read_until_closed(reader) == b""
    with pytest.raises(ConnectionRefusedError):
        await connect(port)
    await wait_for(lambda: echo.active == 0)


async def test_wait_for_helper() -> None:
    state = {"n": 0}

    def bump() -> int:
        state["n"] += 1
        return state["n"] >= 3 and state["n"]

    assert await wait_for(bump) == 3

    async def never() -> bool:
        return False

    with pytest.raises(TimeoutError, match="never happens"):
        await wait_for(never, timeout=0.05, message="never happens")


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def test_aiohttp_websocket_through_proxy(aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_get("/ws", _ws_echo)
    server = await aiohttp_server(app)

    async with (
        FaultProxy("127.0.0.1", server.port) as proxy,
        aiohttp.ClientSession() as session,
        session.ws_connect(proxy.url("/ws")) as ws,
    ):
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=EVENTUALLY) == "hello"
        assert proxy.open_connections == 1

        await proxy.cut()
        msg = await ws.receive(timeout=EVENTUALLY)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.ERROR,
        )
        await wait_for(lambda: ws.closed)
