"""aiohttp's private names that aiohttp_transport.py relies on, checked against the installed
aiohttp: if a release renames one, this fails and says what degrades, instead of
the client silently losing a feature (or, worse, turning it into a reconnect loop).

Each seam has a public fallback in aiohttp_transport.py; the fallback is tested here too.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import nexus_reactive
from nexus_reactive import aiohttp_transport
from nexus_reactive.errors import NexusConnectionError
from nexus_reactive.transport import open_session, open_transport, private_seams

from .faults import wait_for
from .waiting import EVENTUALLY

WHAT_DEGRADES = {
    "ClientSession._retry_connection": (
        "aiohttp may re-send the upgrade once on a reset: one attempt becomes two sockets"
    ),
    "ClientWebSocketResponse._response": (
        "the x-nexus-auth header is not read: a client without a key waits CHALLENGE_GRACE"
    ),
    "ClientWebSocketResponse._writer": "frames queued together go one by one (slower)",
    "WebSocketWriter._write_websocket_frame": "frames queued together go one by one (slower)",
    "WebSocketWriter.transport": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol": "frames queued together go one by one (slower)",
    "WebSocketWriter._output_size": "frames queued together go one by one (slower)",
    "WebSocketWriter._limit": "frames queued together go one by one (slower)",
    "WebSocketWriter._closing": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol._paused": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol._drain_helper": "frames queued together go one by one (slower)",
    "ClientWebSocketResponse._reader": "every received frame costs a receive() (slower)",
    "WebSocketDataQueue._buffer": "every received frame costs a receive() (slower)",
    "WebSocketDataQueue.read": "every received frame costs a receive() (slower)",
    "ClientWebSocketResponse._closing": "every received frame costs a receive() (slower)",
    "ClientWebSocketResponse._closed": "every received frame costs a receive() (slower)",
    "ResponseHandler._data_received_cb": (
        "aiohttp's own heartbeat is used: a callback rescheduled per socket read (slower)"
    ),
    "ClientWebSocketResponse._handle_ping_pong_exception": (
        "a link dead to the heartbeat ends as 'connection lost', not as a heartbeat timeout"
    ),
}


async def echo_server(aiohttp_server: Any, received: list[str], max_msg_size: int = 4 << 20) -> str:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=max_msg_size)
        await ws.prepare(request)
        async for msg in ws:
            received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"ws://127.0.0.1:{server.port}/"


async def test_every_private_aiohttp_name_we_use_still_exists(aiohttp_server: Any) -> None:
    url = await echo_server(aiohttp_server, [])
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            seams = private_seams(ws=transport._ws, session=session)
        finally:
            await transport.close()
    assert set(seams) == set(WHAT_DEGRADES), "private_seams() and this test disagree"
    missing = [name for name, present in seams.items() if not present]
    assert not missing, (
        f"aiohttp {aiohttp.__version__} no longer has: "
        + "; ".join(f"{name} ({WHAT_DEGRADES[name]})" for name in missing)
        + ". Update nexus_reactive/aiohttp_transport.py (the fallbacks keep the client working)."
    )


async def test_without_the_private_writer_batches_still_arrive_in_order(
    aiohttp_server: Any,
) -> None:
    received: list[str] = []
    url = await echo_server(aiohttp_server, received)
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        transport._batcher = None  # what an aiohttp without the private names gets
        frames = [f'{{"n": {n}}}'.encode() for n in range(50)]
        await transport.send_batch(frames)
        await wait_for(lambda: len(received) == 50)
        await transport.close()
    assert received == [f.decode() for f in frames]


@pytest.mark.parametrize("hook", [True, False])
async def test_a_silent_server_is_noticed_with_or_without_the_data_hook(
    aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch, hook: bool
) -> None:
    # The server reads nothing and never answers a ping. With the protocol's data hook,
    # our heartbeat notices; without it (an aiohttp that renamed it), aiohttp's own.
    stop = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await stop.wait()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    monkeypatch.setattr(aiohttp_transport, "data_hook_available", lambda: hook)
    async with open_session() as session:
        transport = await open_transport(
            session, f"ws://127.0.0.1:{server.port}/", headers={}, heartbeat=0.5
        )
        try:
            assert (transport._heartbeat is not None) is hook
            error = await asyncio.wait_for(
                transport.pump_batches(lambda frames: None, lambda exc: None), EVENTUALLY
            )
        finally:
            stop.set()
            await transport.close()
    assert error.cause == "heartbeat_timeout", error


async def test_write_now_writes_only_while_the_socket_keeps_up(aiohttp_server: Any) -> None:
    # Frames go at once, counted as handed, while flow control has not paused writing.
    # A write that puts the socket behind pauses it: the next write_now writes nothing
    # and says so (the writer task then sends the waiting way, in order). So does a
    # writer without the private names, and a closed connection.
    received: list[str] = []
    url = await echo_server(aiohttp_server, received, max_msg_size=0)
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            small = [f'{{"n": {n}}}'.encode() for n in range(40)]
            assert transport.write_now(small) is True
            assert transport.handed == 40
            big = [b'"' + b"x" * (8 << 20) + b'"']  # more than the socket's buffers hold
            assert transport.write_now(big) is True
            assert transport.write_now(small[:1]) is False  # behind: paused
            assert transport.handed == 41
            await transport.send_batch(small[:2])  # the waiting way: drains first
            assert transport.handed == 43
            batcher, transport._batcher = transport._batcher, None
            assert transport.write_now(small[:1]) is False
            transport._batcher = batcher
            await wait_for(lambda: len(received) == 43)
        finally:
            await transport.close()
    assert received[:40] == [f.decode() for f in small]
    assert received[41:] == [f.decode() for f in small[:2]]
    assert transport.write_now(small) is False  # closed: nothing written, no error


async def burst_server(aiohttp_server: Any, count: int) -> str:
    """Sends ``count`` text frames in one write, with a ping, a binary frame and more
    text among them, then closes with 4000: what the receive loop's drain must hand
    over exactly as receive() would."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        writer: Any = ws._writer  # framing without a write each, so frames arrive together
        transport = writer.transport
        chunks: list[bytes] = []
        writer.transport = type("C", (), {"write": chunks.append, "is_closing": lambda s: False})()
        try:
            for n in range(count):
                if n == count // 2:
                    writer._write_websocket_frame(b"are you there", 0x9, 0)  # a ping
                    writer._write_websocket_frame(b"\x00\x01", 0x2, 0)  # binary
                writer._write_websocket_frame(f'{{"n":{n}}}'.encode(), 0x1, 0)
        finally:
            writer.transport = transport
        transport.write(b"".join(chunks))
        await ws.close(code=4000, message=b"bye")
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"ws://127.0.0.1:{server.port}/"


@pytest.mark.parametrize("drain", [True, False], ids=["drained", "receive-per-frame"])
async def test_a_burst_arrives_in_order_with_control_frames_and_the_close(
    aiohttp_server: Any, drain: bool
) -> None:
    count = 2_000
    url = await burst_server(aiohttp_server, count)
    got: list[bytes] = []
    invalid: list[Any] = []
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        assert transport._queue is not None  # the seam is there (checked above)
        buffer, read = transport._queue
        drained = 0

        def counted() -> Any:
            nonlocal drained
            drained += 1
            return read()

        # Without the seam: what an aiohttp without the private names gets.
        transport._queue = (buffer, counted) if drain else None
        try:
            ended = await transport.pump(
                lambda frame: got.append(frame), invalid.append, lambda frame: got.append(frame)
            )
        finally:
            await transport.close()
    assert got == [f'{{"n":{n}}}'.encode() for n in range(count)]
    assert len(invalid) == 1  # the binary frame, in its place, reported once
    assert ended.close_code == 4000
    assert (drained > count // 2) is drain  # most frames came through the drain


async def test_pump_batches_hands_over_each_read_in_order_with_the_binary_in_its_place(
    aiohttp_server: Any,
) -> None:
    count = 2_000
    url = await burst_server(aiohttp_server, count)
    events: list[Any] = []
    batches: list[int] = []

    def on_frames(frames: list[bytes]) -> None:
        batches.append(len(frames))
        events.extend(frames)

    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            ended = await transport.pump_batches(
                on_frames, lambda error: events.append("INVALID"), lambda f: events.append(f)
            )
        finally:
            await transport.close()
    half = count // 2
    assert events == [
        *(f'{{"n":{n}}}'.encode() for n in range(half)),
        "INVALID",  # reported after every frame before it, before any after it
        *(f'{{"n":{n}}}'.encode() for n in range(half, count)),
    ]
    assert ended.close_code == 4000
    assert max(batches) > 100 and 0 not in batches


async def test_a_handler_error_in_a_batch_ends_the_loop_there(aiohttp_server: Any) -> None:
    url = await burst_server(aiohttp_server, 500)
    stop = NexusConnectionError("enough")
    calls: list[int] = []

    def on_frames(frames: list[bytes]) -> NexusConnectionError | None:
        calls.append(len(frames))
        return stop

    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            ended = await transport.pump_batches(on_frames, lambda error: None)
        finally:
            await transport.close()
    assert ended is stop
    assert len(calls) == 1


async def test_a_handler_error_in_the_drain_ends_the_loop_at_that_frame(
    aiohttp_server: Any,
) -> None:
    url = await burst_server(aiohttp_server, 500)
    got: list[bytes] = []
    stop = NexusConnectionError("enough")

    def on_frame(frame: bytes) -> NexusConnectionError | None:
        got.append(frame)
        return stop if len(got) == 300 else None

    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            ended = await transport.pump(on_frame, lambda error: None)
        finally:
            await transport.close()
    assert ended is stop
    assert len(got) == 300


async def test_the_redirect_hook_is_public_api() -> None:
    # The refusal of redirects relies on TraceConfig.on_request_redirect, public since
    # aiohttp 3.0, firing before any request to the Location (tests/test_hostile_servers.py).
    assert hasattr(aiohttp.TraceConfig(), "on_request_redirect")
    assert hasattr(aiohttp, "TraceRequestRedirectParams")


PRIVATE = {"_retry_connection", "_write_websocket_frame", "_output_size", "_limit", "_paused"}
PRIVATE |= {"_drain_helper", "_closing", "_closed"}
#: The transport, and the module that feature-checks aiohttp's private names for it.
_SEAM_MODULES = ("aiohttp_transport.py", "aiohttp_seams.py")


@pytest.mark.parametrize(
    "module",
    sorted(
        p
        for p in Path(nexus_reactive.__file__).parent.rglob("*.py")
        if p.name not in _SEAM_MODULES and "server" not in p.parts
    ),
    ids=lambda p: p.name,
)
def test_no_module_but_transport_touches_aiohttp_private_names(module: Path) -> None:
    tree = ast.parse(module.read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in PRIVATE
        # A module's own attribute of the same name (store's self._limit) is not aiohttp's.
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }
    used |= {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in PRIVATE
    }
    assert not used, (
        f"{module.name} uses aiohttp private names {sorted(used)}: "
        "keep them in aiohttp_seams.py (or aiohttp_transport.py)"
    )
