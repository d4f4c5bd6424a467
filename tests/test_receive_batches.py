"""What one socket read brings is handled as a batch (``Receiver.on_frames``): hostile
bursts, sent in one write by a real server, must mean exactly what the same frames mean
one by one. Answers, repeats, malformed frames and handlers added by a subscriber land
in their place."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import (
    ProtocolError,
    ResponseMessage,
    ServerError,
    WebSocketService,
    use_websocket,
)

from .conftest import client_config
from .faults import wait_for


def response(message_id: str, answer: str = "pushed") -> bytes:
    payload = {"answer": answer}
    return json.dumps({"type": "response", "id": message_id, "payload": payload}).encode()


def write_at_once(ws: web.WebSocketResponse, frames: list[bytes]) -> None:
    """Frame every one of ``frames`` and write them to the socket in one write, so that
    the client reads them together (one batch)."""
    writer: Any = ws._writer
    transport = writer.transport
    chunks: list[bytes] = []
    writer.transport = type("C", (), {"write": chunks.append, "is_closing": lambda s: False})()
    try:
        for frame in frames:
            writer._write_websocket_frame(frame, 0x1, 0)
    finally:
        writer.transport = transport
    transport.write(b"".join(chunks))


async def burst_after_asks(
    aiohttp_server: Any, count: int, burst: Callable[[list[str]], list[bytes]]
) -> str:
    """A server that waits for ``count`` asks, then writes ``burst(their ids)`` at once."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        ids: list[str] = []
        async for msg in ws:
            ask = json.loads(msg.data)
            if ask.get("type") == "ask":
                ids.append(ask["id"])
                if len(ids) == count:
                    write_at_once(ws, burst(ids))
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"ws://127.0.0.1:{server.port}/"


async def burst_after_ask(aiohttp_server: Any, burst: Callable[[str], list[bytes]]) -> str:
    """A server that waits for the client's first ask, then writes ``burst(its id)`` in
    one write, and holds the connection open."""
    return await burst_after_asks(aiohttp_server, 1, lambda ids: burst(ids[0]))


def pushes(start: int, count: int) -> list[bytes]:
    return [response(f"push-{n}") for n in range(start, start + count)]


async def test_an_answer_amid_a_flood_settles_its_ask_in_its_place(aiohttp_server: Any) -> None:
    url = await burst_after_ask(
        aiohttp_server,
        lambda ask_id: [
            *pushes(0, 300),
            response(ask_id, "the answer"),
            *pushes(300, 300),
            b'{"type": "response", "id": "broken"',  # malformed: reported in its place
            *pushes(600, 300),
            response(ask_id, "a repeat"),  # the same answer again: dropped
            response("end"),
        ],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        service.errors.subscribe(
            lambda e: seen.append("ERROR") if isinstance(e, ProtocolError) else None
        )
        answer = await service.ask("anyone?")
        await wait_for(lambda: "end" in seen)
    assert answer.answer == "the answer"
    ask_at = 300
    assert seen[:ask_at] == [f"push-{n}" for n in range(300)]
    answer_id = seen[ask_at]  # the answer, in its place, and once: the repeat is dropped
    assert answer_id != "ERROR" and not answer_id.startswith("push-")
    assert seen.count(answer_id) == 1
    assert seen[ask_at + 1 : ask_at + 301] == [f"push-{n}" for n in range(300, 600)]
    assert seen[ask_at + 301] == "ERROR"
    assert seen[ask_at + 302 :] == [*(f"push-{n}" for n in range(600, 900)), "end"]


async def test_a_handler_added_by_a_subscriber_hears_the_rest_of_the_batch(
    aiohttp_server: Any,
) -> None:
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(ask_id), *pushes(0, 500), response("end")]
    )
    handled: list[str] = []
    unsubscribe: list[Callable[[], None]] = []
    async with WebSocketService(client_config(url)) as service:

        def on_next(message: Any) -> None:
            if message.id == "push-200" and not unsubscribe:
                unsubscribe.append(service.on_message("response", lambda m: handled.append(m.id)))
            if message.id == "push-400":
                unsubscribe[0]()  # and one that leaves hears no more

        service.messages.subscribe(on_next)
        await service.ask("go")
        await wait_for(lambda: handled[-1:] == ["push-399"])
    # As one by one: the message it was added during, then every one until it left.
    assert handled == [f"push-{n}" for n in range(200, 400)]


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
async def test_a_burst_is_delivered_whole_and_in_order(aiohttp_server: Any, metrics: bool) -> None:
    count = 5_000
    url = await burst_after_ask(aiohttp_server, lambda ask_id: [*pushes(0, count), response("end")])
    seen: list[str] = []
    batches: list[int] = []
    service = WebSocketService(client_config(url, metrics=metrics))
    on_frames = service._connection.on_frames

    def counted(frames: list[bytes]) -> Any:
        batches.append(len(frames))
        return on_frames(frames)

    service._connection.on_frames = counted  # watched, not replaced: the real handler
    async with service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        service.send_query("go")
        await wait_for(lambda: seen[-1:] == ["end"])
        if metrics:
            assert service.metrics.value.frames_in == count + 1
    assert seen == [*(f"push-{n}" for n in range(count)), "end"]
    assert max(batches) > 100  # it came in batches: what this file is about


async def test_a_subscriber_that_raises_mid_batch_is_dropped_and_the_rest_flow(
    aiohttp_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = await burst_after_ask(aiohttp_server, lambda ask_id: [*pushes(0, 100), response("end")])
    bad: list[str] = []
    good: list[str] = []
    async with WebSocketService(client_config(url)) as service:

        def fails(message: ResponseMessage) -> None:
            bad.append(message.id)
            if message.id == "push-10":
                raise ValueError("subscriber bug")

        service.messages.subscribe(fails)
        service.messages.subscribe(lambda m: good.append(m.id))
        service.send_query("go")
        await wait_for(lambda: good[-1:] == ["end"])
    assert bad == [f"push-{n}" for n in range(11)]
    assert good == [*(f"push-{n}" for n in range(100)), "end"]
    assert "subscriber bug" in caplog.text


async def test_a_subscriber_that_closes_the_service_mid_batch_ends_cleanly(
    aiohttp_server: Any,
) -> None:
    url = await burst_after_ask(aiohttp_server, lambda ask_id: [*pushes(0, 1000), response("end")])
    seen: list[str] = []
    closing: list[asyncio.Task[None]] = []
    service = WebSocketService(client_config(url))

    def on_next(message: Any) -> None:
        seen.append(message.id)
        if message.id == "push-10":
            closing.append(asyncio.ensure_future(service.close()))

    service.messages.subscribe(on_next, on_completed=lambda: seen.append("completed"))
    await service.connect()
    service.send_query("go")
    await wait_for(lambda: closing and closing[0].done())
    assert seen[-1] == "completed"
    assert seen[:11] == [f"push-{n}" for n in range(11)]


async def test_a_store_keeps_the_last_of_a_burst_in_order(aiohttp_server: Any) -> None:
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(ask_id), *pushes(0, 3000), response("end")]
    )
    async with use_websocket(client_config(url), max_messages=100) as store:
        store.send_message("go")
        await wait_for(lambda: [m.id for m in store.messages.value[-1:]] == ["end"])
        ids = [m.id for m in store.messages.value]
    assert ids == [*(f"push-{n}" for n in range(2901, 3000)), "end"]


async def test_answers_in_one_read_settle_each_ask_once_in_their_place(aiohttp_server: Any) -> None:
    url = await burst_after_asks(
        aiohttp_server,
        3,
        lambda ids: [
            *pushes(0, 10),
            response(ids[2], "third"),  # reordered
            response(ids[0], "first"),
            *pushes(10, 10),
            response(ids[0], "first, again"),  # a repeat: dropped
            response(ids[1], "second"),
            response("end"),
        ],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        service.messages.subscribe(lambda m: seen.append(m.payload.answer))
        answers = await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
        await wait_for(lambda: len(seen) == 24)
    assert [a.answer for a in answers] == ["first", "second", "third"]
    assert seen == ["pushed"] * 10 + ["third", "first"] + ["pushed"] * 10 + ["second", "pushed"]


async def test_a_read_that_opens_with_answers_then_repeats_one_keeps_every_place(
    aiohttp_server: Any,
) -> None:
    # The answers a read opens with are taken out of the table together; what breaks
    # the run (a repeat of one of them, a push, an error answer) is met in its place.
    def burst(ids: list[str]) -> list[bytes]:
        error = {"type": "error", "id": ids[3], "payload": {"code": "bad", "message": "no"}}
        return [
            response(ids[1], "second"),  # reordered
            response(ids[0], "first"),
            response(ids[1], "second, again"),  # a repeat: dropped
            response("push-0"),
            json.dumps(error).encode(),
            response(ids[2], "third"),
            response("end"),
        ]

    url = await burst_after_asks(aiohttp_server, 4, burst)
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        service.messages.subscribe(
            lambda m: seen.append(m.id if m.type == "error" else m.payload.answer)
        )
        results = await asyncio.gather(
            *(service.ask(q) for q in ("a", "b", "c", "d")), return_exceptions=True
        )
        await wait_for(lambda: len(seen) == 6)
    assert [getattr(r, "answer", None) for r in results[:3]] == ["first", "second", "third"]
    assert isinstance(results[3], ServerError) and results[3].code == "bad"
    assert seen[:3] == ["second", "first", "pushed"]
    assert seen[4:] == ["third", "pushed"]


async def test_an_ask_cancelled_by_a_subscriber_mid_read_is_cancelled(aiohttp_server: Any) -> None:
    # Its answer is in the same read, after the push whose subscriber cancels it.
    url = await burst_after_ask(
        aiohttp_server,
        lambda ask_id: [*pushes(0, 5), response(ask_id, "too late"), response("end")],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        task = asyncio.ensure_future(service.ask("cancel me"))

        def on_next(message: Any) -> None:
            seen.append(message.payload.answer)
            if message.id == "push-2":
                task.cancel()

        service.messages.subscribe(on_next)
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_for(lambda: len(seen) == 7)
    assert seen == ["pushed"] * 5 + ["too late", "pushed"]  # its answer delivered once
