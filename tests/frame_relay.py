"""A middlebox for the signed-frame tests: a real WebSocket server on a loopback port
that relays each client connection to the reference server, frame by frame, as a
proxy that ends TLS would, and lets a test change, drop, repeat, hold or inject
frames on the way.

``rewrite(direction, conn, frame)`` returns the frames to pass on instead of
``frame`` (``[]`` drops it); ``direction`` is ``"up"`` (client to server) or
``"down"``; ``conn`` counts the relay's connections from 0. Close codes are passed
on both ways.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

__all__ = ["FrameRelay", "Rewrite"]

Rewrite = Callable[[str, int, str], list[str]]
_FORWARDED = ("x-api-key", "x-max-message-size")


def _unchanged(direction: str, conn: int, frame: str) -> list[str]:
    return [frame]


class FrameRelay:
    """Relays to ``upstream`` (a ``ws://`` URL); :attr:`url` is where clients connect."""

    def __init__(self, upstream: str, rewrite: Rewrite = _unchanged) -> None:
        self.upstream = upstream
        self.rewrite = rewrite
        self.connections = 0
        #: Every frame seen, as (direction, conn, frame) before rewriting.
        self.seen: list[tuple[str, int, str]] = []
        self._server: TestServer | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/")).replace("http://", "ws://", 1)

    async def __aenter__(self) -> FrameRelay:
        app = web.Application()
        app.router.add_get("/", self._handle)
        self._session = aiohttp.ClientSession()
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            await self._server.close()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        conn = self.connections
        self.connections += 1
        headers = {k: request.headers[k] for k in _FORWARDED if k in request.headers}
        upstream = await self._session.ws_connect(self.upstream, headers=headers)
        client = web.WebSocketResponse()
        await client.prepare(request)
        pumps = [
            asyncio.create_task(self._pump("up", conn, client, upstream)),
            asyncio.create_task(self._pump("down", conn, upstream, client)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            await upstream.close()
            await client.close()
        return client

    async def _pump(self, direction: str, conn: int, source: Any, sink: Any) -> None:
        while True:
            msg = await source.receive()
            if msg.type is WSMsgType.TEXT:
                self.seen.append((direction, conn, msg.data))
                for frame in self.rewrite(direction, conn, msg.data):
                    await sink.send_str(frame)
            elif msg.type is WSMsgType.CLOSE:
                code = msg.data if msg.data not in (1005, 1006) else 1000
                await sink.close(code=code, message=(msg.extra or "").encode())
                return
            elif msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                code = source.close_code or 1006
                if code != 1006:
                    await sink.close(code=code)
                return
