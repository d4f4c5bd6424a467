"""Hostile servers and hostile callers, each over real loopback sockets.

Servers that redirect the upgrade, repeat, reorder and flood answers, stall after the
upgrade, send the challenge twice or to a client without a key, cut a frame or a
stream in the middle; key providers that raise or hang; callers on the wrong thread.
Every test is bounded in time (``bounded``) and waits by polling with a deadline.
Redirects, the challenge, key providers and callers on the wrong thread:
test_hostile_upgrades.py.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from nexus_reactive import Message, RequestTimeout, ResponseMessage, WebSocketService

from .faults import FaultProxy, wait_for
from .resilience_servers import Conn, ScriptServer, record_states, start_script_server

F = TypeVar("F", bound=Callable[..., Awaitable[None]])

# Generous for a loaded 2-core machine; a passing test takes a fraction of it.
LIMIT = 30.0


def bounded(seconds: float = LIMIT) -> Callable[[F], F]:
    """Fail the test (instead of hanging the suite) if it runs longer than ``seconds``."""

    def wrap(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run  # type: ignore[return-value]

    return wrap


@pytest.fixture(name="script_server")
async def script_server_fixture(aiohttp_server: Any) -> Callable[..., Awaitable[ScriptServer]]:
    async def start(script: Callable[[Conn], Awaitable[None]], **kw: Any) -> ScriptServer:
        return await start_script_server(aiohttp_server, script, **kw)

    return start


def collect(service: WebSocketService) -> tuple[list[Message], list[ResponseMessage]]:
    """What the application sees: every message, and every on_response call."""
    messages: list[Message] = []
    responses: list[ResponseMessage] = []
    service.messages.subscribe(messages.append)
    service.on_response(responses.append)
    return messages, responses


def ids_of(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


# == repeated, reordered, flooded and unknown answers =======================================


@bounded()
async def test_a_timed_out_ask_answered_three_times_reaches_the_app_once(
    script_server: Any,
) -> None:
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await release.wait()  # answer only after the client gave up
        for _ in range(3):
            await conn.answer(ask, "late")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    with pytest.raises(RequestTimeout):
        await service.ask("slow", timeout=0.2)
    release.set()
    # Frames arrive in order: once the marker is answered, the repeats were processed.
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    ask_id = server.asks()[0]["id"]
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["late"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_dedupe_size_bounds_the_memory_of_answered_ids(script_server: Any) -> None:
    # dedupe_size=2: after three answers the first id is forgotten, so its repeat
    # counts as new (a push); a repeat of the newest is still dropped.
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(3)]
        for ask in asks:
            await conn.answer(ask)
        await conn.answer(asks[0], "again")
        await conn.answer(asks[2], "again")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config(dedupe_size=2))
    _messages, responses = collect(service)
    await service.connect()
    await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    first, _, last = server.asks()[:3]
    assert [m.payload.answer for m in responses if m.id == first["id"]] == ["re: a", "again"]
    assert [m.payload.answer for m in responses if m.id == last["id"]] == ["re: c"]


@bounded()
async def test_a_cancelled_ask_answered_twice_reaches_the_app_once(script_server: Any) -> None:
    asked = asyncio.Event()
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        asked.set()
        await release.wait()
        await conn.answer(ask, "late")
        await conn.answer(ask, "late again")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    task = asyncio.create_task(service.ask("to cancel"))
    await asyncio.wait_for(asked.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    cancelled_id = server.asks()[0]["id"]
    assert ids_of(responses).count(cancelled_id) == 1
    assert ids_of(messages).count(cancelled_id) == 1


@bounded()
async def test_a_fire_and_forget_ask_answered_twice_reaches_the_app_once(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.answer(ask, "one")
        await conn.answer(ask, "two")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    ask_id = service.send_query("fire and forget")
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["one"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_a_fire_and_forget_ask_past_its_timeout_answered_twice_reaches_the_app_once(
    script_server: Any,
) -> None:
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await release.wait()
        await conn.answer(ask, "one")
        await conn.answer(ask, "two")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config(request_timeout=0.2))
    messages, responses = collect(service)
    timeouts: list[Any] = []
    service.errors.subscribe(lambda e: timeouts.append(e) if isinstance(e, RequestTimeout) else 0)
    await service.connect()
    ask_id = service.send_query("fire and forget")
    await wait_for(lambda: timeouts, message="the fire-and-forget ask's timeout is reported")
    release.set()
    assert (await service.ask("marker", timeout=10)).answer == "re: marker"
    await service.close()
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["one"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_answers_in_reverse_order_settle_each_ask_with_its_own(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(5)]
        for ask in reversed(asks):
            await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:
        queries = [f"q{n}" for n in range(5)]
        answers = await asyncio.gather(*(service.ask(q) for q in queries))
    assert [a.answer for a in answers] == [f"re: {q}" for q in queries]


@bounded()
async def test_a_flood_of_repeats_and_unknown_ids_keeps_memory_bounded(
    script_server: Any,
) -> None:
    flood = 30_000

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        for n in range(flood):
            await conn.send(
                {"type": "response", "id": f"unknown-{n}", "payload": {"answer": "x" * 64}}
            )
            if n % 1_000 == 0:
                await conn.answer(ask, "repeated")
        await conn.answer(ask, "repeated")
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    seen: collections.Counter[str] = collections.Counter()
    service.messages.subscribe(lambda m: seen.update((m.id,)))
    await service.connect()
    assert (await service.ask("flooded")).answer == "repeated"
    own = server.asks()[0]["id"]
    await wait_for(lambda: seen.total() >= flood + 1, timeout=LIMIT - 5)
    table = service._core.pending
    # The ask's answer once, however often repeated; pushes with unknown ids are not
    # answers and are delivered as they come; nothing about them is remembered.
    assert seen[own] == 1 and set(seen.values()) == {1}
    assert len(table._answered) == 1 and len(table._abandoned) == 0
    await service.close()


@bounded()
async def test_a_server_repeating_rate_limited_for_one_ask_queues_it_once(
    script_server: Any,
) -> None:
    # A thousand "rate_limited, retry later" for one ask before it can go again: the
    # outbox never holds it twice, and it goes again once (not a thousand times; a
    # refusal read after it went again, on a slow machine, may send it once more), and
    # it is answered once.
    repeats = 1_000
    depths: list[int] = []

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        refusal = {"code": "rate_limited", "message": "slow down", "retry_after": 0.5}
        for _ in range(repeats):
            await conn.send({"type": "error", "id": ask["id"], "payload": refusal})
        again = await conn.next_ask()
        assert again["id"] == ask["id"]
        await conn.answer(again)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config(request_timeout=LIMIT))
    service.outbox_depth.subscribe(depths.append)
    await service.connect()
    assert (await service.ask("patient")).answer == "re: patient"
    sent = [a["payload"]["query"] for a in server.asks()]
    assert sent[:2] == ["patient", "patient"] and len(sent) <= 4  # (1,001 before)
    assert max(depths) == 1
    await service.close()


@bounded()
async def test_an_answer_with_an_unknown_id_does_not_settle_an_ask(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.send({"type": "response", "id": "not-yours", "payload": {"answer": "no"}})
        await conn.send({"type": "response", "id": "not-yours", "payload": {"answer": "no"}})
        await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, _ = collect(service)
    async with service:
        assert (await service.ask("mine")).answer == "re: mine"
    # Not an answer to anything of ours: a push, delivered as it comes.
    assert ids_of(messages).count("not-yours") == 2


# == stalls ================================================================================


@bounded()
async def test_a_server_that_stalls_after_the_upgrade_times_asks_out_and_is_noticed(
    script_server: Any,
) -> None:
    stop = asyncio.Event()

    async def script(conn: Conn) -> None:
        await stop.wait()  # never reads, never answers, never pongs

    server = await script_server(script)
    service = WebSocketService(server.config(heartbeat=0.3, max_reconnect_attempts=None))
    states = record_states(service)
    await service.connect()
    with pytest.raises(RequestTimeout):
        await service.ask("anyone?", timeout=0.2)
    # No pong within the heartbeat: the link is declared dead and a new attempt made.
    await wait_for(lambda: server.connections >= 2, timeout=LIMIT - 10)
    stop.set()
    await service.close()
    assert any("pong" in (s.error or "") or "heartbeat" in (s.error or "") for s in states)


# == cut in the middle ======================================================================


@bounded()
async def test_a_connection_cut_mid_frame_resends_the_ask_and_answers_once(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.answer(ask, "y" * 4_000)
        await conn.drain()

    server = await script_server(script)
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url()))
        messages, responses = collect(service)
        await service.connect()
        proxy.drop_after(1_000)  # the answer's frame is cut after 1,000 bytes
        answer = await service.ask("cut")
        await service.close()
    assert answer.answer == "y" * 4_000
    assert proxy.connections >= 2
    asks = server.asks()
    assert len({a["id"] for a in asks}) == 1 and len(asks) >= 2  # same id, sent again
    assert ids_of(responses) == [asks[0]["id"]]
    assert ids_of(messages).count(asks[0]["id"]) == 1


@bounded()
async def test_a_stream_cut_mid_answer_delivers_each_piece_once(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        pieces = ["The ", "answer ", "is ", "42"]
        upto = 2 if conn.index == 0 else len(pieces)
        for index, delta in enumerate(pieces[:upto]):
            await conn.send(
                {
                    "type": "response_chunk",
                    "id": ask["id"],
                    "payload": {"delta": delta, "index": index},
                }
            )
        if conn.index == 0:
            conn.abort()  # the stream is cut after two pieces
            return
        await conn.answer(ask, "".join(pieces))
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:
        pieces: list[str] = []
        done = asyncio.Event()
        service.ask_stream("stream").subscribe(
            pieces.append, lambda e: done.set(), lambda: done.set()
        )
        await asyncio.wait_for(done.wait(), LIMIT - 5)
    assert pieces == ["The ", "answer ", "is ", "42"]
    assert server.connections == 2
