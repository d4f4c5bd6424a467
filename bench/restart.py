"""Section e ``restart``: from a restarted server's startup line to the first answered ask.

The reference server is SIGKILLed and started again on the same port; a service
connected before asks as soon as it has seen the drop.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from nexus_reactive import WebSocketConfig, WebSocketService

from . import library, servers, traffic
from .rounds import log
from .stats import summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["restart"]


async def restart(suite: Suite) -> dict[str, Any]:
    p = suite.params
    server = servers.start_nexus(suite.api_key)
    port = server.port
    config = WebSocketConfig(
        url=server.url,
        api_key=suite.api_key,
        reconnect_interval=p.reconnect_interval,
        max_reconnect_interval=p.max_reconnect_interval,
        max_reconnect_attempts=None,
        request_timeout=60.0,
    )
    from_line: list[float] = []
    from_kill: list[float] = []
    try:
        async with WebSocketService(config) as service:
            await service.ask(traffic.QUERY)
            for r in range(p.restart_rounds):
                killed = time.perf_counter()
                server.kill()
                await library.wait_until(lambda: not service.state.value.connected)
                answer = asyncio.ensure_future(service.ask(traffic.QUERY))
                try:
                    server, listening = await _respawn(suite, port)
                    await answer
                finally:
                    if not answer.done():
                        answer.cancel()
                    await asyncio.gather(answer, return_exceptions=True)
                answered = time.perf_counter()
                from_line.append((answered - listening) * 1e3)
                from_kill.append((answered - killed) * 1e3)
                log(
                    f"e round {r + 1}/{p.restart_rounds}: {from_line[-1]:,.1f} ms from the "
                    f"startup line, {from_kill[-1]:,.1f} ms from the kill"
                )
    finally:
        server.stop()
    return {
        "unit": "ms",
        "reconnect_interval": p.reconnect_interval,
        "max_reconnect_interval": p.max_reconnect_interval,
        "variants": {
            "startup line -> first answer": summarize(from_line),
            "kill -> first answer": summarize(from_kill),
        },
        "ratios": {},
    }


async def _respawn(suite: Suite, port: int) -> tuple[servers.ServerProcess, float]:
    """Start the reference server again on ``port``; when did it say it listens?"""
    for attempt in range(5):
        server = servers.nexus_process(suite.api_key, port)
        server.spawn()
        try:
            return server, await asyncio.to_thread(server.wait_listening)
        except RuntimeError:
            # The port may still be held for a moment by the killed process.
            if attempt == 4:
                raise
            await asyncio.sleep(0.2)
    raise AssertionError("unreachable")
