"""Scripted servers for the resilience tests: real WebSocket servers on loopback
ports whose (mis)behaviour each test writes, one script call per connection.

Unlike ``conftest.scripted``, a :class:`ScriptServer` can refuse an upgrade with
any HTTP status, abort the TCP connection (the client sees 1006), close with any
code and reason, and it timestamps every upgrade request and every close it
sends, so a test can bound the client's waits from below. Below them, the helpers of
the resilience tests (tests/test_resilience*.py); their fixtures: tests/resilience_kit.py.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from nexus_reactive import ConnectionState, NexusError, Phase, WebSocketConfig, WebSocketService

from .conftest import KEY, client_config, library_tasks
from .faults import wait_for

__all__ = [
    "ECHO",
    "Conn",
    "HttpGate",
    "Script",
    "ScriptServer",
    "answer_all",
    "errors_of",
    "phases",
    "record_states",
    "responses_by_id",
    "start_script_server",
    "supervisor_gone",
    "swallow_first_connection",
    "waiting",
]


@dataclass(eq=False)
class Conn:
    """One upgraded connection of a :class:`ScriptServer`.

    Attributes:
        index: 0 for the server's first connection, then 1, 2, ...
        ws: the server side of the WebSocket.
        request: the upgrade request (its transport can be aborted).
        server: the server this connection belongs to.
    """

    index: int
    ws: web.WebSocketResponse
    request: web.Request
    server: ScriptServer

    async def next_frame(self) -> dict[str, Any] | None:
        """The next JSON text frame (recorded in ``server.received``); ``None`` once closed."""
        while True:
            msg = await self.ws.receive()
            if msg.type is WSMsgType.TEXT:
                frame: dict[str, Any] = json.loads(msg.data)
                self.server.received.append(frame)
                return frame
            if msg.type is WSMsgType.BINARY:
                continue
            return None

    async def next_ask(self) -> dict[str, Any]:
        """The next frame, which must be an ``ask`` (the test fails otherwise)."""
        frame = await self.next_frame()
        assert frame is not None, "the client closed before sending the expected ask"
        assert frame["type"] == "ask", frame
        return frame

    async def answer(self, ask: dict[str, Any], answer: str | None = None) -> None:
        """Send a ``response`` to ``ask`` (by default ``"re: <query>"``)."""
        text = answer if answer is not None else f"re: {ask['payload']['query']}"
        await self.send({"type": "response", "id": ask["id"], "payload": {"answer": text}})

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(message))

    async def close(self, code: int, reason: str = "") -> None:
        """Close with ``code``; the time is recorded in ``server.closed_at`` first."""
        self.server.closed_at.append(asyncio.get_running_loop().time())
        await self.ws.close(code=code, message=reason.encode())

    def abort(self) -> None:
        """Drop the TCP connection without a close frame: the client sees 1006."""
        self.server.closed_at.append(asyncio.get_running_loop().time())
        transport = self.request.transport
        assert transport is not None
        transport.abort()

    async def drain(self) -> None:
        """Read (and record) frames until the client closes."""
        while await self.next_frame() is not None:
            pass


Script = Callable[[Conn], Awaitable[None]]
#: Called with the index of each upgrade request (0, 1, ...): an HTTP response
#: refuses that request; ``None`` lets it upgrade.
HttpGate = Callable[[int], web.StreamResponse | None]


@dataclass
class ScriptServer:
    """A real WebSocket server on a loopback port, driven by a script.

    Attributes:
        requests: upgrade requests seen, refused ones included.
        connections: requests that were upgraded.
        received: every JSON frame received, in order, over all connections.
        requested_at: ``loop.time()`` of each upgrade request, in order.
        closed_at: ``loop.time()`` just before each close or abort the script made.
    """

    server: TestServer
    requests: int = 0
    connections: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    requested_at: list[float] = field(default_factory=list)
    closed_at: list[float] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/"

    def config(self, **options: Any) -> WebSocketConfig:
        """A client config for this server with test-sized intervals."""
        return client_config(self.url, **options)

    def asks(self) -> list[dict[str, Any]]:
        """Every ``ask`` frame received, re-sent copies included."""
        return [f for f in self.received if f.get("type") == "ask"]


async def start_script_server(
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    script: Script,
    http: HttpGate | None = None,
    ws_options: dict[str, Any] | None = None,
) -> ScriptServer:
    """Start a :class:`ScriptServer` with the ``aiohttp_server`` fixture.

    Args:
        aiohttp_server: pytest-aiohttp's fixture (it stops the server after the test).
        script: run for each upgraded connection; the socket is closed after it
            returns, unless the script aborted it.
        http: optional gate that may refuse an upgrade request with an HTTP response.
        ws_options: keywords of each ``web.WebSocketResponse`` (``protocols``, ``compress``).

    Returns:
        The running server.
    """
    holder: list[ScriptServer] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        server = holder[0]
        index = server.requests
        server.requests += 1
        server.requested_at.append(asyncio.get_running_loop().time())
        if request.headers.get("x-api-key") != KEY:
            return web.Response(status=401, text="bad key")
        if http is not None and (refusal := http(index)) is not None:
            return refusal
        ws = web.WebSocketResponse(**(ws_options or {}))
        await ws.prepare(request)
        conn = Conn(server.connections, ws, request, server)
        server.connections += 1
        await script(conn)
        transport = request.transport
        if not ws.closed and transport is not None and not transport.is_closing():
            await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    test_server = await aiohttp_server(app, host="127.0.0.1")
    holder.append(ScriptServer(test_server))
    return holder[0]


def record_states(service: WebSocketService) -> list[ConnectionState]:
    """Every state ``service`` publishes from now on (the current one first)."""
    states: list[ConnectionState] = []
    service.state.subscribe(states.append)
    return states


def phases(states: Sequence[ConnectionState]) -> list[Phase]:
    return [s.phase for s in states]


# -- helpers of the resilience tests -----------------------------------------------------

ECHO = "You asked: "  # the reference server's default engine


def responses_by_id(service: WebSocketService) -> Counter[str]:
    """Count every ``response`` the application sees, by id (a live counter)."""
    seen: Counter[str] = Counter()
    service.on_response(lambda m: seen.update([m.id]))
    return seen


def errors_of(service: WebSocketService) -> list[NexusError]:
    errors: list[NexusError] = []
    service.errors.subscribe(errors.append)
    return errors


def waiting(states: list[ConnectionState]) -> list[ConnectionState]:
    return [s for s in states if s.phase is Phase.WAITING]


async def answer_all(conn: Conn) -> None:
    """A well-behaved server: answer every ask until the client closes."""
    while (frame := await conn.next_frame()) is not None:
        if frame["type"] == "ask":
            await conn.answer(frame)


async def swallow_first_connection(conn: Conn) -> None:
    """Connection 0 swallows its asks; later connections answer everything."""
    if conn.index == 0:
        await conn.drain()
        return
    await answer_all(conn)


async def supervisor_gone() -> None:
    """Wait until the service's supervisor has finished: no attempt can follow."""
    await wait_for(lambda: library_tasks() == [], message="the supervisor to finish")
