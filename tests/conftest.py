"""Shared fixtures: the real reference server and scripted servers on loopback ports.

The reference server, the fault proxy and the waiting helpers are the test kit that
users get (:mod:`nexus_reactive.testing` and its pytest plugin, ``nexus_reactive``):
the suite uses them as a user's tests do, so that the kit stays real.
"""

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

from nexus_reactive import AskRequest, AskResponse, WebSocketConfig
from nexus_reactive.server import create_app
from nexus_reactive.testing import NexusServer
from nexus_reactive.testing import client_config as kit_client_config

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
    """The kit's :func:`nexus_reactive.testing.client_config` with the test key."""
    return kit_client_config(url, KEY, **options)


#: The reference server of the test kit; the suite uses it as its users do.
Nexus = NexusServer
ServerFactory = Callable[..., Awaitable[Nexus]]


def gated_engine(gate: asyncio.Event) -> Callable[[AskRequest], Awaitable[AskResponse]]:
    """An engine that answers ``re: <query>``, holding queries that start with ``slow``
    until ``gate`` is set (asks kept in flight across a fault)."""

    async def engine(request: AskRequest) -> AskResponse:
        if request.query.startswith("slow"):
            await gate.wait()
        return AskResponse(answer=f"re: {request.query}")

    return engine


@pytest.fixture
def nexus_key() -> str:
    """The kit's servers accept :data:`KEY` (the kit's default is a fresh key)."""
    return KEY


@pytest.fixture
def start_nexus(nexus_server_factory: ServerFactory) -> ServerFactory:
    """Start a reference server with ``create_app(**options)``; stopped after the test.
    The kit's ``nexus_server_factory`` fixture."""
    return nexus_server_factory


@pytest.fixture
def nexus(nexus_server: Nexus) -> Nexus:
    """The reference server with its default engine: the kit's ``nexus_server``."""
    return nexus_server


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


async def fail_only_fail(ws: web.WebSocketResponse, conn: Scripted) -> None:
    """A script: answers the query ``fail`` with an ``error``, never answers the rest."""
    while (frame := await conn.next_frame(ws)) is not None:
        if frame["payload"]["query"] == "fail":
            error = {"code": "internal", "message": "no"}
            await ws.send_str(json.dumps({"type": "error", "id": frame["id"], "payload": error}))


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
