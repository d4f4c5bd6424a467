"""Hostile servers and hostile callers, each over real loopback sockets.

Servers that redirect the upgrade, repeat, reorder and flood answers, stall after the
upgrade, send the challenge twice or to a client without a key, cut a frame or a
stream in the middle; key providers that raise or hang; callers on the wrong thread.
Every test is bounded in time (``bounded``) and waits by polling with a deadline.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import (
    AuthenticationError,
    Message,
    NexusConnectionError,
    RedirectRefused,
    RequestTimeout,
    ResponseMessage,
    RetriesExhausted,
    UsageError,
    WebSocketService,
)
from nexus_reactive.server.runner import server_ssl_context

from .conftest import KEY, client_config
from .faults import FaultProxy, wait_for
from .resilience_servers import Conn, ScriptServer, phases, record_states, start_script_server
from .tlsutil import make_tls

F = TypeVar("F", bound=Callable[..., Awaitable[None]])

# Generous for a loaded 2-core machine; a passing test takes a fraction of it.
LIMIT = 30.0


def bounded(seconds: float = LIMIT) -> Callable[[F], F]:
    """Fail the test (instead of hanging the suite) if it runs longer than ``seconds``."""

    def wrap(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> None:
            await asyncio.wait_for(test(*args, **kwargs), seconds)

        return run  # type: ignore[return-value]

    return wrap


@pytest.fixture
async def script_server(aiohttp_server: Any) -> Callable[..., Awaitable[ScriptServer]]:
    async def start(script: Callable[[Conn], Awaitable[None]], **kw: Any) -> ScriptServer:
        return await start_script_server(aiohttp_server, script, **kw)

    return start


def collect(service: WebSocketService) -> tuple[list[Message], list[ResponseMessage]]:
    """What the application sees: every message, and every on_response call."""
    messages: list[Message] = []
    responses: list[ResponseMessage] = []
    service.messages.subscribe(messages.append)
    service.on_response(responses.append)
    return messages, responses


def ids_of(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


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


# == repeated, reordered, flooded and unknown answers =======================================


@bounded()
async def test_a_timed_out_ask_answered_three_times_reaches_the_app_once(
    script_server: Any,
) -> None:
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await release.wait()  # answer only after the client gave up
        for _ in range(3):
            await conn.answer(ask, "late")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    with pytest.raises(RequestTimeout):
        await service.ask("slow", timeout=0.2)
    release.set()
    # Frames arrive in order: once the marker is answered, the repeats were processed.
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    ask_id = server.asks()[0]["id"]
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["late"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_dedupe_size_bounds_the_memory_of_answered_ids(script_server: Any) -> None:
    # dedupe_size=2: after three answers the first id is forgotten, so its repeat
    # counts as new (a push); a repeat of the newest is still dropped.
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(3)]
        for ask in asks:
            await conn.answer(ask)
        await conn.answer(asks[0], "again")
        await conn.answer(asks[2], "again")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config(dedupe_size=2))
    _messages, responses = collect(service)
    await service.connect()
    await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    first, _, last = server.asks()[:3]
    assert [m.payload.answer for m in responses if m.id == first["id"]] == ["re: a", "again"]
    assert [m.payload.answer for m in responses if m.id == last["id"]] == ["re: c"]


@bounded()
async def test_a_cancelled_ask_answered_twice_reaches_the_app_once(script_server: Any) -> None:
    asked = asyncio.Event()
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        asked.set()
        await release.wait()
        await conn.answer(ask, "late")
        await conn.answer(ask, "late again")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    task = asyncio.create_task(service.ask("to cancel"))
    await asyncio.wait_for(asked.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    cancelled_id = server.asks()[0]["id"]
    assert ids_of(responses).count(cancelled_id) == 1
    assert ids_of(messages).count(cancelled_id) == 1


@bounded()
async def test_a_fire_and_forget_ask_answered_twice_reaches_the_app_once(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.answer(ask, "one")
        await conn.answer(ask, "two")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, responses = collect(service)
    await service.connect()
    ask_id = service.send_query("fire and forget")
    assert (await service.ask("marker")).answer == "re: marker"
    await service.close()
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["one"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_a_fire_and_forget_ask_past_its_timeout_answered_twice_reaches_the_app_once(
    script_server: Any,
) -> None:
    release = asyncio.Event()

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await release.wait()
        await conn.answer(ask, "one")
        await conn.answer(ask, "two")
        marker = await conn.next_ask()
        await conn.answer(marker)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config(request_timeout=0.2))
    messages, responses = collect(service)
    timeouts: list[Any] = []
    service.errors.subscribe(lambda e: timeouts.append(e) if isinstance(e, RequestTimeout) else 0)
    await service.connect()
    ask_id = service.send_query("fire and forget")
    await wait_for(lambda: timeouts, message="the fire-and-forget ask's timeout is reported")
    release.set()
    assert (await service.ask("marker", timeout=10)).answer == "re: marker"
    await service.close()
    assert [m.payload.answer for m in responses if m.id == ask_id] == ["one"]
    assert ids_of(messages).count(ask_id) == 1


@bounded()
async def test_answers_in_reverse_order_settle_each_ask_with_its_own(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(5)]
        for ask in reversed(asks):
            await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:
        queries = [f"q{n}" for n in range(5)]
        answers = await asyncio.gather(*(service.ask(q) for q in queries))
    assert [a.answer for a in answers] == [f"re: {q}" for q in queries]


@bounded()
async def test_a_flood_of_repeats_and_unknown_ids_keeps_memory_bounded(
    script_server: Any,
) -> None:
    flood = 30_000

    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        for n in range(flood):
            await conn.send(
                {"type": "response", "id": f"unknown-{n}", "payload": {"answer": "x" * 64}}
            )
            if n % 1_000 == 0:
                await conn.answer(ask, "repeated")
        await conn.answer(ask, "repeated")
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    seen: collections.Counter[str] = collections.Counter()
    service.messages.subscribe(lambda m: seen.update((m.id,)))
    await service.connect()
    assert (await service.ask("flooded")).answer == "repeated"
    own = server.asks()[0]["id"]
    await wait_for(lambda: seen.total() >= flood + 1, timeout=LIMIT - 5)
    table = service._core.pending
    # The ask's answer once, however often repeated; pushes with unknown ids are not
    # answers and are delivered as they come; nothing about them is remembered.
    assert seen[own] == 1 and set(seen.values()) == {1}
    assert len(table._answered) == 1 and len(table._abandoned) == 0
    await service.close()


@bounded()
async def test_an_answer_with_an_unknown_id_does_not_settle_an_ask(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.send({"type": "response", "id": "not-yours", "payload": {"answer": "no"}})
        await conn.send({"type": "response", "id": "not-yours", "payload": {"answer": "no"}})
        await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    messages, _ = collect(service)
    async with service:
        assert (await service.ask("mine")).answer == "re: mine"
    # Not an answer to anything of ours: a push, delivered as it comes.
    assert ids_of(messages).count("not-yours") == 2


# == stalls ================================================================================


@bounded()
async def test_a_server_that_stalls_after_the_upgrade_times_asks_out_and_is_noticed(
    script_server: Any,
) -> None:
    stop = asyncio.Event()

    async def script(conn: Conn) -> None:
        await stop.wait()  # never reads, never answers, never pongs

    server = await script_server(script)
    service = WebSocketService(server.config(heartbeat=0.3, max_reconnect_attempts=None))
    states = record_states(service)
    await service.connect()
    with pytest.raises(RequestTimeout):
        await service.ask("anyone?", timeout=0.2)
    # No pong within the heartbeat: the link is declared dead and a new attempt made.
    await wait_for(lambda: server.connections >= 2, timeout=LIMIT - 10)
    stop.set()
    await service.close()
    assert any("pong" in (s.error or "") or "heartbeat" in (s.error or "") for s in states)


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


# == cut in the middle ======================================================================


@bounded()
async def test_a_connection_cut_mid_frame_resends_the_ask_and_answers_once(
    script_server: Any,
) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        await conn.answer(ask, "y" * 4_000)
        await conn.drain()

    server = await script_server(script)
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url()))
        messages, responses = collect(service)
        await service.connect()
        proxy.drop_after(1_000)  # the answer's frame is cut after 1,000 bytes
        answer = await service.ask("cut")
        await service.close()
    assert answer.answer == "y" * 4_000
    assert proxy.connections >= 2
    asks = server.asks()
    assert len({a["id"] for a in asks}) == 1 and len(asks) >= 2  # same id, sent again
    assert ids_of(responses) == [asks[0]["id"]]
    assert ids_of(messages).count(asks[0]["id"]) == 1


@bounded()
async def test_a_stream_cut_mid_answer_delivers_each_piece_once(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        ask = await conn.next_ask()
        pieces = ["The ", "answer ", "is ", "42"]
        upto = 2 if conn.index == 0 else len(pieces)
        for index, delta in enumerate(pieces[:upto]):
            await conn.send(
                {
                    "type": "response_chunk",
                    "id": ask["id"],
                    "payload": {"delta": delta, "index": index},
                }
            )
        if conn.index == 0:
            conn.abort()  # the stream is cut after two pieces
            return
        await conn.answer(ask, "".join(pieces))
        await conn.drain()

    server = await script_server(script)
    async with WebSocketService(server.config()) as service:
        pieces: list[str] = []
        done = asyncio.Event()
        service.ask_stream("stream").subscribe(
            pieces.append, lambda e: done.set(), lambda: done.set()
        )
        await asyncio.wait_for(done.wait(), LIMIT - 5)
    assert pieces == ["The ", "answer ", "is ", "42"]
    assert server.connections == 2


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
    assert "API key provider raised OSError (at test_hostile_servers.py:" in state.error
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
