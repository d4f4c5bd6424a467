"""The aiohttp transport: batched writes reach a real server intact and in order."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web

from nexus_reactive.transport import open_transport

from .faults import wait_for


@pytest.mark.parametrize("batched", [True, False])
async def test_send_batch_delivers_every_frame_intact_and_in_order(
    aiohttp_server: Any, batched: bool
) -> None:
    received: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        async for msg in ws:  # aiohttp's server rejects unmasked client frames
            received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    # Lengths that take each of the three WebSocket length encodings.
    frames = [
        f'{{"n":{i},"pad":"{"x" * size}"}}'.encode()
        for i, size in enumerate([0, 10, 200, 70_000, 5, 125, 126, 65_535, 65_536])
    ]
    async with aiohttp.ClientSession() as session:
        transport = await open_transport(session, f"ws://127.0.0.1:{server.port}/", headers={})
        if not batched:
            transport._batcher = None  # the per-frame fallback
        else:
            assert transport._batcher is not None  # this aiohttp supports batching
        await transport.send_batch(frames)
        await transport.send_batch(frames[:1])
        await wait_for(lambda: len(received) == len(frames) + 1)
        await transport.close()
    assert received == [f.decode() for f in frames] + [frames[0].decode()]
