"""The writer never sleeps on a frame queued while it was going idle: a subscriber of
``outbox_depth`` that sends when the outbox empties is heard at once. Real server."""

from __future__ import annotations

import asyncio

from nexus_reactive import WebSocketService

from .conftest import ServerFactory
from .waiting import EVENTUALLY, wait_for


async def test_a_message_sent_when_the_outbox_empties_goes_out(start_nexus: ServerFactory) -> None:
    nexus = await start_nexus()
    service = WebSocketService(nexus.config(heartbeat=None, request_timeout=None))
    try:
        # The writer's first look finds only frames of asks no longer pending (here
        # the asks leave the table behind the outbox's back, as an ask given up at
        # the head while a rate limit's window holds the writer does): it takes
        # nothing and goes idle, and the depth it publishes then (0) makes a
        # subscriber send, which must go out without another wake-up.
        asks = [asyncio.create_task(service.ask(f"q{i}")) for i in range(3)]
        await wait_for(lambda: len(service._core.outbox) == 3)
        service._core.pending.drain()
        sent: list[int] = []

        def on_depth(depth: int) -> None:
            if depth == 0 and not sent:
                sent.append(depth)
                service.send_query("after the empty outbox")

        service.outbox_depth.subscribe(on_depth)
        await service.connect()
        await wait_for(lambda: nexus.stats.asks_received == 1, EVENTUALLY)
        assert sent == [0]
        for task in asks:
            task.cancel()
    finally:
        await service.close()


async def test_asks_failed_by_disconnect_leave_the_outbox(start_nexus: ServerFactory) -> None:
    # Their frames would never be sent: counted as waiting, they made outbox_depth
    # (and a lazy connection's demand) say 3 until the next connect's first write.
    nexus = await start_nexus()
    service = WebSocketService(nexus.config(heartbeat=None, request_timeout=None))
    try:
        depths: list[int] = []
        service.outbox_depth.subscribe(depths.append)
        asks = [asyncio.create_task(service.ask(f"q{i}")) for i in range(3)]
        await wait_for(lambda: len(service._core.outbox) == 3)
        service.send_query("fire and forget: stays queued")
        service.disconnect()
        await asyncio.gather(*asks, return_exceptions=True)
        assert len(service._core.outbox) == 1
        assert depths[-1] == 1
        await service.connect()
        await wait_for(lambda: nexus.stats.asks_received == 1)
    finally:
        await service.close()
