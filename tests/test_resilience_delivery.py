"""Resilience: delivery across reconnects (asks re-sent once, in order, answered once).
The fixtures and helpers, and what the waits are sized for: tests/test_resilience.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexus_reactive import Phase, RequestTimeout, ResponseMessage, WebSocketService

from .faults import FaultProxy, wait_for

# The fixtures; the autouse one checks that no test leaves a library task behind.
from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import Conn, swallow_first_connection

# -- delivery across reconnects ----------------------------------------------------------


async def test_request_timeout_bounds_an_ask_across_a_reconnect(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.next_ask()
        if conn.index == 0:
            await conn.close(1012)
            return
        await conn.drain()  # the re-sent ask is never answered either

    server = await script_server(script)
    # Room for the reconnect and the re-send before the deadline, on a loaded machine too.
    service = WebSocketService(server.config(request_timeout=3.0))
    await service.connect()
    pending = asyncio.ensure_future(service.ask("will time out"))
    await wait_for(lambda: len(server.asks()) == 2)
    first, resent = server.asks()
    assert first["id"] == resent["id"]
    with pytest.raises(RequestTimeout) as info:
        await pending
    assert first["id"] in str(info.value)
    assert service.pending_count == 0
    assert service.state.value.connected
    await service.close()


async def test_out_of_order_answers_after_a_reconnect(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(3)]
        if conn.index == 0:
            await conn.close(1001)
            return
        for ask in reversed(asks):
            await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    await service.connect()
    answers = await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
    assert [a.answer for a in answers] == ["re: a", "re: b", "re: c"]
    ids = [a["id"] for a in server.asks()]
    assert ids[:3] == ids[3:]  # re-sent in the order they were made
    await service.close()


async def test_resent_asks_go_out_before_messages_queued_later(script_server: Any) -> None:
    server = await script_server(swallow_first_connection)
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url(), max_reconnect_attempts=None))
        await service.connect()
        first = [asyncio.ensure_future(service.ask(q)) for q in ("a", "b")]
        await wait_for(lambda: len(server.asks()) == 2)
        await proxy.stop_listening()
        await proxy.cut()
        await wait_for(lambda: service.state.value.phase is Phase.WAITING)
        later = [asyncio.ensure_future(service.ask(q)) for q in ("c", "d")]
        await wait_for(lambda: service.pending_count == 4)
        await proxy.resume_listening()
        answers = await asyncio.gather(*first, *later)
        assert [a.answer for a in answers] == ["re: a", "re: b", "re: c", "re: d"]
        queries = [a["payload"]["query"] for a in server.asks()]
        assert queries == ["a", "b", "a", "b", "c", "d"]
        await service.close()


async def test_duplicate_answers_after_a_reconnect_are_dropped(script_server: Any) -> None:
    first_ids: list[str] = []

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            a, b = await conn.next_ask(), await conn.next_ask()
            first_ids.extend([a["id"], b["id"]])
            await conn.answer(a)
            await conn.close(1012)  # b is on the wire, unanswered
            return
        b = await conn.next_ask()
        assert b["id"] == first_ids[1]
        await conn.answer({"id": first_ids[0], "payload": {"query": "a"}})  # stale again
        await conn.answer(b)
        await conn.answer(b)
        await conn.send({"type": "response", "id": "sentinel", "payload": {"answer": "end"}})
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    got: list[ResponseMessage] = []
    service.on_response(got.append)
    await service.connect()
    a, b = await asyncio.gather(service.ask("a"), service.ask("b"))
    assert (a.answer, b.answer) == ("re: a", "re: b")
    await wait_for(lambda: any(m.id == "sentinel" for m in got))
    assert [m.id for m in got] == [*first_ids, "sentinel"]
    assert server.connections == 2
    await service.close()
