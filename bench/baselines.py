"""The baselines: what an application would write without the library.

Floods (each returns the seconds from "start connecting" to "sentinel received"):

- :func:`flood_raw`: aiohttp ``receive()`` of bytes, no parsing: the ceiling;
- :func:`flood_raw_decode`: the same plus the library's ``codec.decode`` (a
  reference point: the cost of typed decoding alone, without service or store);
- :func:`flood_naive`: aiohttp with ``json.loads`` of every frame;
- :func:`flood_websockets`: the ``websockets`` library with ``json.loads``.

- :func:`flood_picows`, :func:`flood_picows_decode`: picows (the fastest asyncio
  WebSocket client), frames as bytes, and plus ``codec.decode``: anchors.

Asks: :func:`naive_asker` (aiohttp, ``json.dumps``/``json.loads`` and a table of
futures by id), :func:`picows_asker` (picows + msgspec: the fastest client, an anchor)
and :func:`echo_line` (asyncio streams: the raw TCP floor).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from nexus_reactive import codec

from . import traffic

__all__ = [
    "AskFn",
    "echo_line",
    "flood_naive",
    "flood_picows",
    "flood_picows_decode",
    "flood_raw",
    "flood_raw_decode",
    "flood_websockets",
    "naive_asker",
    "picows_asker",
    "stop_reader",
]

AskFn = Callable[[], Awaitable[object]]


async def stop_reader(reader: asyncio.Task[None]) -> None:
    """Cancel an ask client's reader task and wait for it to end."""
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader


_TEXT = WSMsgType.TEXT
_SENTINEL = traffic.SENTINEL
_DONE = traffic.SENTINEL_ID


def _check(count: int, n: int, variant: str) -> None:
    if count != n + 1:
        raise RuntimeError(f"{variant}: received {count} frames, expected {n + 1}")


async def flood_raw(url: str, n: int, api_key: str) -> float:
    """Receive a flood with aiohttp, frames as bytes, not parsed."""
    t0 = time.perf_counter()
    count = 0
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"x-api-key": api_key}, decode_text=False) as ws,
    ):
        receive = ws.receive
        while True:
            msg = await receive()
            if msg.type is _TEXT:
                count += 1
                if msg.data == _SENTINEL:
                    break
            else:
                raise RuntimeError(f"raw: unexpected {msg.type!r}")
        elapsed = time.perf_counter() - t0
    _check(count, n, "raw")
    return elapsed


async def flood_raw_decode(url: str, n: int, api_key: str) -> float:
    """Receive a flood with aiohttp and decode each frame with ``codec.decode``."""
    t0 = time.perf_counter()
    count = 0
    decode = codec.decode
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"x-api-key": api_key}, decode_text=False) as ws,
    ):
        receive = ws.receive
        while True:
            msg = await receive()
            if msg.type is _TEXT:
                count += 1
                if decode(msg.data).id == _DONE:
                    break
            else:
                raise RuntimeError(f"raw+decode: unexpected {msg.type!r}")
        elapsed = time.perf_counter() - t0
    _check(count, n, "raw+decode")
    return elapsed


async def flood_naive(url: str, n: int, api_key: str) -> float:
    """Receive a flood the way most aiohttp code does: text frames, ``json.loads``."""
    t0 = time.perf_counter()
    count = 0
    loads = json.loads
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"x-api-key": api_key}) as ws,
    ):
        while True:
            msg = await ws.receive()
            if msg.type is _TEXT:
                message = loads(msg.data)
                count += 1
                if message["id"] == _DONE:
                    break
            else:
                raise RuntimeError(f"naive: unexpected {msg.type!r}")
        elapsed = time.perf_counter() - t0
    _check(count, n, "naive")
    return elapsed


async def flood_websockets(url: str, n: int, api_key: str) -> float:
    """Receive a flood with the ``websockets`` library and ``json.loads``."""
    from websockets.asyncio.client import connect

    t0 = time.perf_counter()
    count = 0
    loads = json.loads
    async with connect(
        url,
        additional_headers={"x-api-key": api_key},
        compression=None,  # the same bytes on the wire as every other variant
        ping_interval=None,
        max_size=None,
    ) as ws:
        async for data in ws:
            message = loads(data)
            count += 1
            if message["id"] == _DONE:
                break
        elapsed = time.perf_counter() - t0
    _check(count, n, "websockets")
    return elapsed


@asynccontextmanager
async def naive_asker(url: str, api_key: str) -> AsyncIterator[AskFn]:
    """A naive ask client: ``json.dumps`` out, ``json.loads`` in, futures by id.

    Yields:
        ``ask()``: send one ask and wait for its answer's payload.
    """
    pending: dict[str, asyncio.Future[Any]] = {}
    loop = asyncio.get_running_loop()

    async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type is not _TEXT:
                continue
            message = json.loads(msg.data)
            future = pending.pop(message["id"], None)
            if future is None or future.done():
                continue
            if message["type"] == "error":
                future.set_exception(RuntimeError(message["payload"]["message"]))
            else:
                future.set_result(message["payload"])

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"x-api-key": api_key}) as ws,
    ):
        reader = asyncio.create_task(read(ws))

        async def ask() -> object:
            ask_id = uuid.uuid4().hex
            future: asyncio.Future[Any] = loop.create_future()
            pending[ask_id] = future
            await ws.send_str(
                json.dumps({"type": "ask", "id": ask_id, "payload": {"query": traffic.QUERY}})
            )
            return await future

        try:
            yield ask
        finally:
            await stop_reader(reader)


@asynccontextmanager
async def echo_line(url: str) -> AsyncIterator[AskFn]:
    """The raw TCP floor: write a line the size of an ask frame, read it back.

    Args:
        url: the echo server's ``tcp://host:port``.

    Yields:
        ``ask()``: one line round trip.
    """
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    line = b"x" * (len(traffic.ask_frame()) - 1) + b"\n"

    async def ask() -> object:
        writer.write(line)
        await writer.drain()
        return await reader.readline()

    try:
        yield ask
    finally:
        writer.close()
        await writer.wait_closed()


# -- picows: the fastest asyncio WebSocket client, as an anchor -------------------------


async def _picows_flood(url: str, n: int, api_key: str, decode: bool) -> float:
    import picows

    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0
    text = picows.WSMsgType.TEXT
    decoder = codec.decode

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            nonlocal count
            if frame.msg_type is not text:
                return
            data = frame.get_payload_as_bytes()
            count += 1
            last = decoder(data).id == _DONE if decode else data == _SENTINEL
            if last and not done.done():
                done.set_result(None)

        def on_ws_disconnected(self, transport: Any) -> None:
            if not done.done():
                done.set_exception(RuntimeError("picows: disconnected before the sentinel"))

    t0 = time.perf_counter()
    transport, _ = await picows.ws_connect(Listener, url, extra_headers={"x-api-key": api_key})
    try:
        await asyncio.wait_for(done, 300)
        elapsed = time.perf_counter() - t0
    finally:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()
    _check(count, n, "picows+decode" if decode else "picows")
    return elapsed


async def flood_picows(url: str, n: int, api_key: str) -> float:
    """Receive a flood with picows, each frame's payload as bytes, not parsed."""
    return await _picows_flood(url, n, api_key, decode=False)


async def flood_picows_decode(url: str, n: int, api_key: str) -> float:
    """Receive a flood with picows and decode each frame with ``codec.decode`` (msgspec)."""
    return await _picows_flood(url, n, api_key, decode=True)


@asynccontextmanager
async def picows_asker(url: str, api_key: str) -> AsyncIterator[AskFn]:
    """The fastest ask client we know how to write: picows, msgspec out and in, futures
    by id, frames handled in picows' ``on_ws_frame`` callback (no reader task).

    Yields:
        ``ask()``: send one ask and wait for its answer's payload.
    """
    import msgspec
    import picows

    class Answer(msgspec.Struct):
        type: str
        id: str
        payload: dict[str, Any]

    read = msgspec.json.Decoder(Answer).decode
    write = msgspec.json.Encoder().encode
    pending: dict[str, asyncio.Future[Any]] = {}
    loop = asyncio.get_running_loop()
    text = picows.WSMsgType.TEXT

    class Listener(picows.WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type is not text:
                return
            message = read(frame.get_payload_as_bytes())
            future = pending.pop(message.id, None)
            if future is None or future.done():
                return
            if message.type == "error":
                future.set_exception(RuntimeError(str(message.payload.get("message"))))
            else:
                future.set_result(message.payload)

    transport, _ = await picows.ws_connect(Listener, url, extra_headers={"x-api-key": api_key})
    payload = {"query": traffic.QUERY}

    async def ask() -> object:
        ask_id = uuid.uuid4().hex
        future: asyncio.Future[Any] = loop.create_future()
        pending[ask_id] = future
        transport.send(text, write({"type": "ask", "id": ask_id, "payload": payload}))
        return await future

    try:
        yield ask
    finally:
        transport.send_close()
        transport.disconnect()
        await transport.wait_disconnected()
