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
        # Asks made before connecting and failed by disconnect(): their frames stay in
        # the outbox until the writer's first look, which takes nothing and goes idle;
        # the depth it publishes then (0) makes a subscriber send, which must go out
        # without waiting for something else to wake the writer.
        asks = [asyncio.create_task(service.ask(f"q{i}")) for i in range(3)]
        await wait_for(lambda: len(service._core.outbox) == 3)
        service.disconnect()
        await asyncio.gather(*asks, return_exceptions=True)
        assert len(service._core.outbox) == 3  # (the premise: the frames are still there)
        sent: list[int] = []

        def on_depth(depth: int) -> None:
            if depth == 0 and not sent:
                sent.append(depth)
                service.send_query("after the empty outbox")

        service.outbox_depth.subscribe(on_depth)
        await service.connect()
        await wait_for(lambda: nexus.stats.asks_received == 1, EVENTUALLY)
        assert sent == [0]
    finally:
        await service.close()
