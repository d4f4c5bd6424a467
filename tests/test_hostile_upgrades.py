"""Hostile servers at the upgrade and around it, and callers on the wrong thread, over real
loopback sockets: redirects at the upgrade, the key-pair challenge sent twice or to a client
without a key, key providers that raise or hang. Bounded in time as
test_hostile_servers.py says."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import (
    AuthenticationError,
    NexusConnectionError,
    RedirectRefused,
    RetriesExhausted,
    UsageError,
    WebSocketService,
)
from nexus_reactive.server.runner import server_ssl_context

from .conftest import KEY, client_config
from .faults import wait_for
from .resilience_servers import Conn, phases, record_states
from .test_hostile_servers import (
    LIMIT,
    bounded,
    script_server_fixture,  # noqa: F401 (the fixture)
)
from .tlsutil import make_tls

# == redirects at the upgrade ===============================================================


class Witness:
    """A second HTTP server that counts every request and keeps its headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.server: TestServer | None = None

    async def start(self, aiohttp_server: Any, host: str) -> Witness:
        async def handler(request: web.Request) -> web.StreamResponse:
            self.requests.append(dict(request.headers))
            return web.Response(status=404)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.server = await aiohttp_server(app, host=host)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


async def redirector(
    aiohttp_server: Any, status: int, location: Callable[[], str], **server_kw: Any
) -> tuple[TestServer, list[dict[str, str]]]:
    """A server that answers the upgrade (and anything else) with a redirect."""
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.append(dict(request.headers))
        return web.Response(status=status, headers={"Location": location()})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    server = await aiohttp_server(app, host="127.0.0.1", **server_kw)
    return server, seen


async def assert_refused(service: WebSocketService, location: str) -> RedirectRefused:
    states = record_states(service)
    with pytest.raises(RedirectRefused) as info:
        await service.connect()
    error = info.value
    assert error.location == location and location in str(error)
    assert not error.retryable
    state = service.state.value
    assert state.failed and state.error is not None and location in state.error
    assert not any(s.connected for s in states)
    await service.close()
    return error


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@bounded()
async def test_a_redirect_to_another_host_is_refused_and_sends_it_nothing(
    aiohttp_server: Any, status: int
) -> None:
    witness = await Witness().start(aiohttp_server, "127.0.0.2")
    location = f"http://127.0.0.2:{witness.port}/"
    server, seen = await redirector(aiohttp_server, status, lambda: location)
    service = WebSocketService(client_config(f"ws://127.0.0.1:{server.port}/"))

    error = await assert_refused(service, location)

    assert error.status == status
    assert witness.requests == []  # no request at all: the key never went there
    assert len(seen) == 1  # fatal at once: no retry storm


@bounded()
async def test_a_redirect_to_the_same_host_is_not_followed_either(aiohttp_server: Any) -> None:
    followed: list[str] = []

    async def elsewhere(request: web.Request) -> web.StreamResponse:
        followed.append(request.path)
        return web.Response(status=404)

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=307, headers={"Location": "/moved"})

    app = web.Application()
    app.router.add_get("/", redirect)
    app.router.add_get("/moved", elsewhere)
    server = await aiohttp_server(app, host="127.0.0.1")
    service = WebSocketService(client_config(f"ws://127.0.0.1:{server.port}/"))

    await assert_refused(service, "/moved")

    assert followed == []


@bounded()
async def test_a_wss_redirect_down_to_plain_ws_is_refused(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    witness = await Witness().start(aiohttp_server, "127.0.0.2")
    location = f"ws://127.0.0.2:{witness.port}/"
    tls = make_tls(tmp_path)
    server, seen = await redirector(
        aiohttp_server,
        307,
        lambda: location,
        ssl=server_ssl_context(tls.server_cert, tls.server_key),
    )
    service = WebSocketService(
        client_config(f"wss://127.0.0.1:{server.port}/", ssl=tls.client_context())
    )

    await assert_refused(service, location)

    assert len(seen) == 1 and seen[0].get("x-api-key") == KEY  # over TLS, to the origin
    assert witness.requests == []


# == the key-pair challenge =================================================================


@bounded()
async def test_a_challenge_to_a_client_without_a_key_fails_connect_never_connected(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.send({"type": "challenge", "id": "c1", "payload": {"challenge": "nonce"}})
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    states = record_states(service)
    with pytest.raises(AuthenticationError, match="signing key"):
        await service.connect()
    await service.close()
    assert not any(s.connected for s in states), phases(states)
    assert server.connections == 1  # fatal: not retried


@bounded()
async def test_a_second_challenge_on_an_authenticated_connection_is_ignored(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.send({"type": "challenge", "id": "c1", "payload": {"challenge": "nonce"}})
        auth = await conn.next_frame()
        assert auth is not None and auth["type"] == "auth"
        await conn.send(
            {"type": "auth_ok", "id": "c1", "payload": {"pubkey": auth["payload"]["pubkey"]}}
        )
        await conn.send({"type": "challenge", "id": "c2", "payload": {"challenge": "again"}})
        ask = await conn.next_ask()
        await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    key = Ed25519PrivateKey.generate()
    async with WebSocketService(server.config(signing_key=key)) as service:
        assert (await service.ask("still here")).answer == "re: still here"
        assert service.state.value.connected
    assert server.connections == 1


# == key providers =========================================================================


@bounded()
async def test_a_key_provider_that_raises_once_is_retried_and_asks_succeed(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.close(1012)  # a restart: the reconnect calls the provider again
            return
        while (ask := await conn.next_frame()) is not None:
            await conn.answer(ask)

    calls: list[int] = []

    def provider() -> str:
        calls.append(1)
        if len(calls) == 2:
            raise OSError("token service unreachable")
        return KEY

    server = await script_server(script)
    service = WebSocketService(server.config(api_key=provider, max_reconnect_attempts=5))
    errors: list[Any] = []
    service.errors.subscribe(errors.append)
    await service.connect()
    await wait_for(lambda: server.connections == 2 and service.state.value.connected)
    assert (await service.ask("after the outage")).answer == "re: after the outage"
    await service.close()
    assert len(calls) == 3
    assert any("API key provider raised OSError" in str(e) for e in errors)


@bounded()
async def test_a_key_provider_that_always_raises_ends_failed_with_the_error(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.drain()

    def provider() -> str:
        raise OSError("token service unreachable")

    server = await script_server(script)
    service = WebSocketService(server.config(api_key=provider, max_reconnect_attempts=2))
    with pytest.raises(RetriesExhausted):
        await service.connect()
    state = service.state.value
    assert state.failed and state.error is not None
    # What raised and where, never its text: a provider's message may quote a secret.
    assert "API key provider raised OSError (at test_hostile_upgrades.py:" in state.error
    assert "in provider)" in state.error and "unreachable" not in state.error
    with pytest.raises(RetriesExhausted):
        await service.ask("no")
    await service.close()
    assert server.requests == 0


@bounded()
async def test_a_key_provider_that_hangs_is_bounded_by_connect_timeout(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.drain()

    async def provider() -> str:
        await asyncio.Event().wait()
        return KEY

    server = await script_server(script)
    service = WebSocketService(
        server.config(api_key=provider, connect_timeout=0.3, max_reconnect_attempts=1)
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RetriesExhausted, match="connect_timeout"):
        await service.connect()
    assert loop.time() - started < LIMIT / 2
    assert service.state.value.failed
    await service.close()


@bounded()
async def test_the_key_provider_is_called_exactly_once_per_attempt(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        while (ask := await conn.next_frame()) is not None:
            await conn.answer(ask)

    def gate(index: int) -> web.StreamResponse | None:
        return web.Response(status=503) if index < 3 else None

    calls: list[int] = []

    async def provider() -> str:
        calls.append(1)
        return KEY

    server = await script_server(script, http=gate)
    async with WebSocketService(server.config(api_key=provider)) as service:
        assert (await service.ask("hi")).answer == "re: hi"
    assert server.requests == 4
    assert len(calls) == server.requests


# == callers on the wrong thread ============================================================


@bounded()
async def test_sending_from_another_thread_is_refused_before_any_side_effect(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:
        depth = service.outbox_depth.value
        outcomes: dict[str, BaseException | None] = {}

        def other_thread() -> None:
            calls: dict[str, Callable[[], object]] = {
                "send_query": lambda: service.send_query("from a thread"),
                "send": lambda: service.send(
                    {"type": "ask", "id": "t1", "payload": {"query": "x"}}
                ),
                "disconnect": service.disconnect,
            }
            for name, call in calls.items():
                try:
                    call()
                except BaseException as exc:
                    outcomes[name] = exc
                else:
                    outcomes[name] = None

        thread = threading.Thread(target=other_thread)
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        for name, outcome in outcomes.items():
            assert isinstance(outcome, UsageError), (name, outcome)
            assert "call_soon_threadsafe" in str(outcome) and name in str(outcome)
        assert set(outcomes) == {"send_query", "send", "disconnect"}
        assert service.outbox_depth.value == depth and service.pending_count == 0
        assert service.state.value.connected
        # A round trip through the server: nothing from the thread arrived before it.
        service.send({"type": "ask", "id": "marker", "payload": {"query": "m"}})
        await wait_for(lambda: server.received)
    assert [f["id"] for f in server.received] == ["marker"]


@bounded()
async def test_awaiting_ask_on_another_loop_is_refused(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:

        def other_loop() -> BaseException | None:
            try:
                asyncio.run(service.ask("elsewhere"))
            except BaseException as exc:
                return exc
            return None

        outcome = await asyncio.to_thread(other_loop)
        assert isinstance(outcome, UsageError) and "ask" in str(outcome)
        assert service.pending_count == 0
    assert server.received == []


def test_redirect_refused_is_a_fatal_connection_error() -> None:
    error = RedirectRefused(307, "http://evil.example/", "ws://127.0.0.1:1")
    assert isinstance(error, NexusConnectionError) and not error.retryable
    assert "http://evil.example/" in str(error) and error.status == 307
