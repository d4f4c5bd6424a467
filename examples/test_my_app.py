"""Testing an app built on nexus-reactive, with the library's test kit.

Copy this file into your tests. It needs `pip install 'nexus-reactive[testing]'`
(pytest and pytest-asyncio); the fixtures `nexus_server`, `nexus_server_factory`,
`nexus_key` and `fault_proxy` come with the library's pytest plugin. It runs in
pytest-asyncio's strict mode (the `pytestmark` below) and in its auto mode.
"""

from __future__ import annotations

import asyncio

import pytest

from nexus_reactive import (
    AskResponse,
    AuthenticationError,
    RequestTimeout,
    WebSocketConfig,
    WebSocketService,
)
from nexus_reactive.testing import NexusServer, ProxyFactory, ServerFactory, wait_for_state

pytestmark = pytest.mark.asyncio  # strict mode needs it; auto mode does not mind


class Assistant:
    """The app under test. In your project, import yours instead."""

    def __init__(self, config: WebSocketConfig) -> None:
        self.service = WebSocketService(config)

    async def answer(self, question: str) -> str:
        try:
            response = await self.service.ask(question, timeout=1.0)
        except RequestTimeout:
            return "The assistant is slow right now: try again."
        return response.answer


async def test_it_answers(nexus_server: NexusServer) -> None:
    # config(): the server's URL and key, and test-sized retry intervals.
    app = Assistant(nexus_server.config())
    async with app.service:
        assert await app.answer("What is Nexus?") == "You asked: What is Nexus?"
    assert nexus_server.stats.asks_received == 1


async def test_it_survives_a_dropped_connection(
    nexus_server: NexusServer, fault_proxy: ProxyFactory
) -> None:
    proxy = await fault_proxy(nexus_server)
    app = Assistant(nexus_server.config(url=proxy.url()))
    async with app.service:
        assert await app.answer("one")
        await proxy.cut()  # the connection is reset, as by a crashed load balancer
        assert await app.answer("two") == "You asked: two"  # it reconnected
    assert proxy.connections == 2


async def test_it_comes_back_after_a_server_restart(nexus_server: NexusServer) -> None:
    app = Assistant(nexus_server.config())
    async with app.service:
        await wait_for_state(app.service, "connected")
        await nexus_server.restart()  # the same port; clients see close code 1001
        assert await app.answer("back?") == "You asked: back?"


async def test_a_slow_link_gives_a_polite_answer(
    nexus_server: NexusServer, fault_proxy: ProxyFactory
) -> None:
    proxy = await fault_proxy(nexus_server)
    app = Assistant(nexus_server.config(url=proxy.url()))
    async with app.service:
        await wait_for_state(app.service, "connected")
        proxy.stall()  # bytes are held, not lost: a frozen link
        assert await app.answer("anyone?") == "The assistant is slow right now: try again."


async def test_a_refused_key_is_reported(
    nexus_server: NexusServer, fault_proxy: ProxyFactory
) -> None:
    proxy = await fault_proxy(nexus_server)
    proxy.refuse_upgrade(401)  # or 503 (retried), 429 with {"Retry-After": "1"}, ...
    service = WebSocketService(nexus_server.config(url=proxy.url()))
    connecting = asyncio.ensure_future(service.connect())
    state = await wait_for_state(service, "failed")  # fails after a deadline, never hangs
    assert "401" in (state.error or "")
    with pytest.raises(AuthenticationError):
        await connecting
    await service.close()


async def test_a_server_closing_with_a_code(
    nexus_server: NexusServer, fault_proxy: ProxyFactory
) -> None:
    proxy = await fault_proxy(nexus_server)
    app = Assistant(nexus_server.config(url=proxy.url()))
    async with app.service:
        await wait_for_state(app.service, "connected")
        await proxy.close_with(4401, "key revoked")  # 4401 and 4403 are fatal
        state = await wait_for_state(app.service, "failed")
        assert state.close_code == 4401


async def test_with_your_own_engine(nexus_server_factory: ServerFactory) -> None:
    # Any create_app option: engine=, heartbeat=, rate_limit=, require_signature=, ...
    server = await nexus_server_factory(
        engine=lambda request: AskResponse(answer=f"Echo: {request.query}")
    )
    app = Assistant(server.config())
    async with app.service:
        assert await app.answer("hi") == "Echo: hi"
