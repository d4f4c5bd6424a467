"""Edges of the batch receive path (``Receiver.on_frames``) found in review: each
must mean what the same frames meant one by one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import ProtocolError, WebSocketService

from .conftest import client_config
from .faults import wait_for
from .test_receive_batches import burst_after_ask, pushes, response


async def test_a_handler_added_while_the_last_message_of_a_read_is_delivered_hears_it(
    aiohttp_server: Any,
) -> None:
    # One by one, a handler added by a subscriber hears the message it was added
    # during; the last message of a read (of a read of one, the usual case) too.
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(ask_id), *pushes(0, 20), response("end")]
    )
    handled: list[str] = []
    added: list[Callable[[], None]] = []
    async with WebSocketService(client_config(url)) as service:

        def on_next(message: Any) -> None:
            if message.id == "end" and not added:
                added.append(service.on_message("response", lambda m: handled.append(m.id)))

        service.messages.subscribe(on_next)
        service.send_query("go")
        await wait_for(lambda: bool(added))
        assert handled == ["end"]


def _pump_locals(task: asyncio.Task[Any]) -> dict[str, Any] | None:
    """The locals of the transport's receive loop, found down the task's await chain."""
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None)
        if frame is not None and frame.f_code.co_name == "_pump":
            return dict(frame.f_locals)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return None


async def test_the_receive_loop_holds_no_read_while_it_waits_for_the_next(
    aiohttp_server: Any,
) -> None:
    # A read can be hundreds of kilobytes (a flood, or big answers): once handled, the
    # loop must not keep its frames alive while the connection idles.
    big = "x" * 50_000
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(f"big-{n}", big) for n in range(20)]
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        service.send_query("go")
        await wait_for(lambda: seen[-1:] == ["big-19"])
        tasks = [t for t in asyncio.all_tasks() if _pump_locals(t) is not None]
        assert tasks, "the receive loop's task was not found"
        held = _pump_locals(tasks[0]) or {}
        frames = held.get("frames") or []
        assert sum(map(len, frames)) < 50_000, f"{len(frames)} frames held while idle"


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
async def test_metrics_do_not_change_how_an_ask_answered_mid_read_ends(
    aiohttp_server: Any, metrics: bool
) -> None:
    # The answer is in the same read as a push whose subscriber disconnects. An ask
    # answered in a read is settled before the subscribers hear of the read's earlier
    # messages: it ends answered, with metrics on as with them off.
    url = await burst_after_ask(
        aiohttp_server,
        lambda ask_id: [*pushes(0, 5), response(ask_id, "the answer"), response("end")],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url, metrics=metrics)) as service:
        task = asyncio.ensure_future(service.ask("q"))

        def on_next(message: Any) -> None:
            seen.append(message.id)
            if message.id == "push-2":
                service.disconnect()

        service.messages.subscribe(on_next)
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        await wait_for(lambda: seen[-1:] == ["end"])
        if metrics:
            assert service.metrics.value.asks_answered == 1
    assert getattr(outcome, "answer", outcome) == "the answer"


def write_mixed_at_once(ws: web.WebSocketResponse, frames: list[tuple[int, bytes]]) -> None:
    """Frame each (opcode, data) and write them all to the socket in one write."""
    writer: Any = ws._writer
    transport = writer.transport
    chunks: list[bytes] = []
    writer.transport = type("C", (), {"write": chunks.append, "is_closing": lambda s: False})()
    try:
        for opcode, data in frames:
            writer._write_websocket_frame(data, opcode, 0)
    finally:
        writer.transport = transport
    transport.write(b"".join(chunks))


async def test_a_binary_frame_a_ping_and_a_close_in_one_read_keep_their_places(
    aiohttp_server: Any,
) -> None:
    text, binary, ping, close = 0x1, 0x2, 0x9, 0x8
    written: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if json.loads(msg.data).get("type") == "ask" and not written:
                written.append(True)
                write_mixed_at_once(
                    ws,
                    [
                        *((text, f) for f in pushes(0, 50)),
                        (binary, b"\x00binary"),
                        *((text, f) for f in pushes(50, 50)),
                        (ping, b"p"),
                        *((text, f) for f in pushes(100, 50)),
                        (close, (1011).to_bytes(2, "big") + b"bye"),
                        *((text, f) for f in pushes(150, 50)),  # after the close: never read
                    ],
                )
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    seen: list[str] = []
    dropped: list[Any] = []  # the states after the close
    config = client_config(f"ws://127.0.0.1:{server.port}/")
    async with WebSocketService(config) as service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        service.errors.subscribe(
            lambda e: seen.append("BINARY") if isinstance(e, ProtocolError) else None
        )
        service.state.subscribe(
            lambda s: dropped.append(s) if written and not s.connected else None
        )
        service.send_query("go")
        await wait_for(lambda: bool(dropped))
    assert seen == [
        *(f"push-{n}" for n in range(50)),
        "BINARY",
        *(f"push-{n}" for n in range(50, 150)),
    ]
