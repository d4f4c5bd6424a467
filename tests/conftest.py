"""Shared fixtures: the real reference server and scripted servers on loopback ports."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from nexus_reactive import WebSocketConfig
from nexus_reactive.server import create_app
from nexus_reactive.server.app import STATS_KEY
from nexus_reactive.server.state import ServerStats

from .waiting import EVENTUALLY

#: ``NEXUS_TEST_LOOP=uvloop`` (``make test-uvloop``) runs every test on uvloop's event loop.
TEST_LOOP = os.environ.get("NEXUS_TEST_LOOP", "asyncio")


def pytest_configure(config: pytest.Config) -> None:
    if TEST_LOOP == "uvloop":
        import uvloop

        # pytest-asyncio makes each test's loop from the current policy; asyncio.run and
        # new_event_loop elsewhere (the sync store's thread) use it too.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif TEST_LOOP != "asyncio":
        raise pytest.UsageError(f"NEXUS_TEST_LOOP must be asyncio or uvloop, not {TEST_LOOP!r}")


def pytest_report_header(config: pytest.Config) -> str:
    return f"nexus-reactive test loop: {TEST_LOOP} (NEXUS_TEST_LOOP)"


KEY = "test-key-7f3a9c"  # distinctive, so tests can scan output for it


def client_config(url: str, /, **options: Any) -> WebSocketConfig:
    """A client config for ``url`` (``url=`` overrides it) with the test key and
    test-sized intervals.

    Retries are quick; the bounds on a connect, on key-pair authentication and on an
    ask are generous, so that a loaded machine never trips them: a test of those
    bounds sets its own.
    """
    defaults: dict[str, Any] = {
        "url": url,
        "api_key": KEY,
        "reconnect_interval": 0.01,
        "max_reconnect_interval": 0.05,
        "connect_timeout": EVENTUALLY,
        "request_timeout": EVENTUALLY,
        "auth_timeout": EVENTUALLY,
    }
    defaults.update(options)
    return WebSocketConfig(**defaults)


@dataclass
class Nexus:
    """A reference server running on a loopback port."""

    server: TestServer

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    @property
    def stats(self) -> ServerStats:
        return self.server.app[STATS_KEY]

    def config(self, **options: Any) -> WebSocketConfig:
        """A client config for this server, with test-sized intervals."""
        return client_config(self.url, **options)


ServerFactory = Callable[..., Awaitable[Nexus]]


@pytest.fixture
async def start_nexus(aiohttp_server: Any) -> ServerFactory:
    """Start a reference server with ``create_app(**options)``; stopped after the test."""

    async def start(**options: Any) -> Nexus:
        options.setdefault("api_keys", KEY)
        server = await aiohttp_server(create_app(**options), host="127.0.0.1")
        return Nexus(server)

    return start


@pytest.fixture
async def nexus(start_nexus: ServerFactory) -> Nexus:
    """The reference server with its default engine."""
    return await start_nexus()


@dataclass
class Scripted:
    """A real WebSocket server whose behaviour the test writes, for the cases a
    correct server never produces (malformed frames, duplicate answers, ...).

    ``script(ws, conn)`` runs for each connection; ``received`` collects every
    JSON frame the server got, in order.
    """

    server: TestServer
    received: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    def config(self, **options: Any) -> WebSocketConfig:
        """A client config for this server, with test-sized intervals."""
        return client_config(self.url, **options)

    async def next_frame(self, ws: web.WebSocketResponse) -> dict[str, Any] | None:
        """Receive one JSON frame (recorded in ``received``); ``None`` when closed."""
        msg = await ws.receive()
        if msg.type is not WSMsgType.TEXT:
            return None
        frame: dict[str, Any] = json.loads(msg.data)
        self.received.append(frame)
        return frame


Script = Callable[[web.WebSocketResponse, Scripted], Awaitable[None]]


@pytest.fixture
async def scripted(aiohttp_server: Any) -> Callable[[Script], Awaitable[Scripted]]:
    async def start(script: Script) -> Scripted:
        holder: list[Scripted] = []

        async def handler(request: web.Request) -> web.StreamResponse:
            if request.headers.get("x-api-key") != KEY:
                return web.Response(status=401, text="bad key")
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            holder[0].connections += 1
            await script(ws, holder[0])
            if not ws.closed:
                await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        server = await aiohttp_server(app, host="127.0.0.1")
        holder.append(Scripted(server))
        return holder[0]

    return start


def response_frame(message_id: str, answer: str) -> str:
    return json.dumps({"type": "response", "id": message_id, "payload": {"answer": answer}})


MakeServer = Callable[..., Awaitable[TestServer]]


@pytest.fixture
def make_server(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> MakeServer:
    async def make(**options: Any) -> TestServer:
        options.setdefault("api_keys", KEY)
        return await aiohttp_server(create_app(**options))

    return make


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def library_tasks() -> list[asyncio.Task[Any]]:
    """Tasks the library started (they are all named ``nexus-reactive...``) still running."""
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("nexus-reactive") and not t.done()
    ]
