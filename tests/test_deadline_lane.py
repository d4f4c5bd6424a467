"""Asks with the default ``request_timeout`` are timed in the order of the table of
pending asks (no bucket, nothing to add or remove); asks with their own ``timeout=``
keep their buckets. Mixed together, against a server that answers some asks and never
others, each ask ends at its own deadline, and nothing else. Real server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexus_reactive import RequestTimeout, WebSocketService

from .resilience_kit import no_task_left_behind_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import Conn
from .waiting import EVENTUALLY


def _silent_for(names: set[str]) -> Any:
    """A server that answers every ask but those whose query is in ``names``."""

    async def script(conn: Conn) -> None:
        while (frame := await conn.next_frame()) is not None:
            if frame["type"] == "ask" and frame["payload"]["query"] not in names:
                await conn.answer(frame)

    return script


async def test_each_ask_ends_at_its_own_deadline_whichever_way_it_is_timed(
    script_server: Any,
) -> None:
    server = await script_server(_silent_for({"long", "d0", "d1", "d2", "short"}))
    ended: list[str] = []

    async def ask(query: str, timeout: float | None = None) -> None:
        try:
            await service.ask(query, timeout=timeout)
        except RequestTimeout:
            ended.append(query)
        else:
            ended.append(f"answered {query}")

    async with WebSocketService(server.config(request_timeout=1.5)) as service:
        await service.connect()
        tasks = [asyncio.create_task(ask("long", timeout=4.0))]  # a bucket, due last
        for i in range(3):  # the table's order: d0, d1, d2, answered asks between them
            tasks.append(asyncio.create_task(ask(f"d{i}")))
            tasks.append(asyncio.create_task(ask(f"a{i}")))
        tasks.append(asyncio.create_task(ask("short", timeout=0.3)))  # made last, due first
        await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)

    timed_out = [name for name in ended if not name.startswith("answered")]
    assert timed_out == ["short", "d0", "d1", "d2", "long"]
    assert sorted(n for n in ended if n.startswith("answered")) == [
        "answered a0",
        "answered a1",
        "answered a2",
    ]


async def test_an_ask_timed_in_order_behind_settled_ones_still_times_out(
    script_server: Any,
) -> None:
    # Thousands of asks answered before it leave the table: the timer, reading the
    # table from its oldest ask, finds the one left and ends it on time.
    server = await script_server(_silent_for({"never"}))
    async with WebSocketService(server.config(request_timeout=1.0)) as service:
        await service.connect()
        await asyncio.gather(*(service.ask(f"q{i}") for i in range(2_000)))
        never = asyncio.create_task(service.ask("never"))
        await asyncio.gather(*(service.ask(f"r{i}") for i in range(2_000)))
        with pytest.raises(RequestTimeout, match="within 1s"):
            await asyncio.wait_for(never, EVENTUALLY)
        assert not service._core.pending._asks
