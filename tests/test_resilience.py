"""Resilience: the client under injected faults, over real loopback sockets.

Two kinds of fault are injected here, never a mocked transport:

- network faults through :class:`~tests.faults.FaultProxy` between the client and
  the reference server (RST cuts, a refused port, a blackholed half-open link,
  latency, a connection dropped in the middle of a frame);
- server faults from scripted servers (:mod:`tests.resilience_servers`) that close
  with each close code of docs/protocol.md, refuse upgrades with HTTP statuses, send
  garbage, oversized or duplicate frames, or accept and drop at once.

Retry intervals are scaled down (backoff from 0.01 s); the intervals a test of a
timeout depends on keep a wide margin over the delays of a loaded machine, or the
clock is injected; every wait polls a lasting condition with a deadline
(:mod:`tests.waiting`). Durations are only ever bounded from below (the client
waited *at least* retry_after), never from above.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionState,
    NexusConnectionError,
    NexusError,
    OutboxFull,
    Phase,
    ProtocolError,
    RequestTimeout,
    ResponseMessage,
    RetriesExhausted,
    WebSocketService,
)

from .conftest import Nexus, ServerFactory, gated_engine, library_tasks
from .faults import FaultProxy, wait_for
from .resilience_servers import (
    Conn,
    HttpGate,
    Script,
    ScriptServer,
    phases,
    record_states,
    start_script_server,
)

ECHO = "You asked: "  # the reference server's default engine


@pytest.fixture(autouse=True)
async def _no_task_left_behind() -> AsyncIterator[None]:
    """Lifecycle hygiene: every test closes its services, and they leave no task."""
    yield
    left = library_tasks()
    for task in left:  # a failed test must not leak its tasks into the next one
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    assert left == []


@pytest.fixture
def script_server(
    aiohttp_server: Any,
) -> Callable[..., Any]:
    async def start(script: Script, http: HttpGate | None = None) -> ScriptServer:
        return await start_script_server(aiohttp_server, script, http)

    return start


@pytest.fixture
async def proxy(nexus: Nexus) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the reference server."""
    async with FaultProxy("127.0.0.1", nexus.port) as fault_proxy:
        yield fault_proxy


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


# -- network faults through the proxy, against the reference server ------------------


async def test_server_restart_mid_stream_answers_every_ask_once(start_nexus: Any) -> None:
    gate = asyncio.Event()

    nexus = await start_nexus(engine=gated_engine(gate))
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=None))
        seen = responses_by_id(service)
        states = record_states(service)
        await service.connect()
        fast = await asyncio.gather(*(service.ask(f"fast {i}") for i in range(10)))
        slow = [asyncio.ensure_future(service.ask(f"slow {i}")) for i in range(10)]
        await wait_for(lambda: nexus.stats.asks_received == 20)

        # The server goes down: live connections reset, new ones refused.
        await proxy.stop_listening()
        await proxy.cut()
        await wait_for(lambda: service.state.value.phase is Phase.WAITING)
        await wait_for(lambda: nexus.stats.connections_open == 0)
        queued = [asyncio.ensure_future(service.ask(f"queued {i}")) for i in range(10)]
        await wait_for(lambda: service.state.value.attempt >= 2)  # refused at least once
        assert not any(t.done() for t in slow + queued)

        gate.set()
        await proxy.resume_listening()
        answers = await asyncio.gather(*slow, *queued)

        assert [a.answer for a in fast] == [f"re: fast {i}" for i in range(10)]
        assert [a.answer for a in answers] == [f"re: slow {i}" for i in range(10)] + [
            f"re: queued {i}" for i in range(10)
        ]
        assert len(seen) == 30 and set(seen.values()) == {1}
        assert Phase.WAITING in phases(states)
        # The ten slow asks were on the wire when the link died: sent again, with
        # the same ids; the answered fast ones were not. Their first computation
        # outlived the connection, and each resend joined it: computed once.
        stats = nexus.stats
        assert stats.asks_received == 10 + 10 + 10 + 10
        assert stats.engine_calls == 30 and stats.asks_replayed == 10
        await service.close()


async def test_graceful_server_restart_1001_with_asks_in_flight(
    start_nexus: ServerFactory,
) -> None:
    gate = asyncio.Event()

    server = await start_nexus(engine=gated_engine(gate))
    stats_before = server.stats
    service = WebSocketService(server.config(max_reconnect_attempts=None))
    try:
        states = record_states(service)
        seen = responses_by_id(service)
        await service.connect()
        assert (await service.ask("fast")).answer == "re: fast"
        slow = [asyncio.ensure_future(service.ask(f"slow {i}")) for i in range(5)]
        await wait_for(lambda: stats_before.asks_received == 6)

        await server.stop()  # the server shuts down: its sockets close with 1001
        await wait_for(lambda: any(s.close_code == 1001 for s in waiting(states)))
        queued = [asyncio.ensure_future(service.ask(f"queued {i}")) for i in range(5)]
        await wait_for(lambda: service.state.value.attempt >= 2)  # refused meanwhile

        gate.set()
        await server.start()  # the same port, a new app: it remembers no ids
        answers = await asyncio.gather(*slow, *queued)
        assert [a.answer for a in answers] == [f"re: slow {i}" for i in range(5)] + [
            f"re: queued {i}" for i in range(5)
        ]
        assert len(seen) == 11 and set(seen.values()) == {1}
        assert server.stats is not stats_before
        assert server.stats.asks_received == 10 and server.stats.engine_calls == 10
    finally:
        await service.close()


async def test_answer_lost_mid_frame_is_replayed_not_recomputed(
    nexus: Nexus, proxy: FaultProxy
) -> None:
    service = WebSocketService(nexus.config(url=proxy.url()))
    seen = responses_by_id(service)
    await service.connect()
    assert (await service.ask("warm")).answer == f"{ECHO}warm"
    proxy.drop_after(10)  # the next answer is cut 10 bytes in, then the link closes
    answer = await service.ask("lost on the way")
    assert answer.answer == f"{ECHO}lost on the way"
    assert proxy.connections == 2
    assert set(seen.values()) == {1} and len(seen) == 2
    # The re-sent ask carried the same id: the server replayed its reply.
    stats = nexus.stats
    assert stats.asks_received == 3 and stats.engine_calls == 2 and stats.asks_replayed == 1
    await service.close()


async def test_server_down_at_start_then_up(nexus: Nexus, proxy: FaultProxy) -> None:
    await proxy.stop_listening()
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=None))
    states = record_states(service)
    connecting = asyncio.ensure_future(service.connect())
    await wait_for(lambda: service.state.value.attempt >= 3)
    assert not connecting.done()
    assert service.state.value.error and "cannot connect" in service.state.value.error
    await proxy.resume_listening()
    await connecting
    assert service.state.value.connected
    assert (await service.ask("finally")).answer == f"{ECHO}finally"
    assert phases(states)[:4] == [
        Phase.DISCONNECTED,
        Phase.CONNECTING,
        Phase.WAITING,
        Phase.CONNECTING,
    ]
    assert proxy.connections == 1
    await service.close()


async def test_half_open_link_is_noticed_by_heartbeat(nexus: Nexus, proxy: FaultProxy) -> None:
    # A ping goes out after 2 s without traffic and its pong has 1 s to come back:
    # a loaded machine delays a pong by far less, so only the dead link is noticed.
    service = WebSocketService(nexus.config(url=proxy.url(), heartbeat=2.0))
    errors = errors_of(service)
    states = record_states(service)
    await service.connect()
    assert (await service.ask("before")).answer == f"{ECHO}before"

    def heal(state: ConnectionState) -> None:
        # The link "recovers" the moment the client gives up on it, so that the
        # next attempt is not blackholed as well.
        if not state.connected:
            proxy.blackhole(False)

    proxy.blackhole()  # sockets stay open; nothing gets through either way
    service.state.subscribe(heal)
    pending = asyncio.ensure_future(service.ask("into the void"))
    # The reconnect takes milliseconds: wait for it in the recorded states, where
    # it cannot slip between two polls of the current one.
    await wait_for(lambda: Phase.WAITING in phases(states) and service.state.value.connected)
    assert (await pending).answer == f"{ECHO}into the void"
    assert (await service.ask("after")).answer == f"{ECHO}after"

    lost = phases(states)[phases(states).index(Phase.CONNECTED) + 1 :]
    assert lost[0] is Phase.WAITING and Phase.CONNECTED in lost
    assert any(isinstance(e, NexusConnectionError) and "ping" in str(e) for e in errors)
    assert proxy.connections == 2
    # The swallowed ask never reached the server; its re-sent copy did.
    assert nexus.stats.asks_received == 3 and nexus.stats.engine_calls == 3
    await service.close()


async def test_connect_timeout_bounds_every_attempt(nexus: Nexus, proxy: FaultProxy) -> None:
    proxy.blackhole()  # the upgrade request vanishes: each attempt hangs until its timeout
    # Once the link is back an attempt has 0.5 s to connect; a loaded machine that
    # misses it only costs another attempt.
    service = WebSocketService(
        nexus.config(url=proxy.url(), connect_timeout=0.5, max_reconnect_attempts=None)
    )
    errors = errors_of(service)
    connecting = asyncio.ensure_future(service.connect())
    await wait_for(lambda: service.state.value.attempt >= 2, timeout=10)
    assert not connecting.done()
    timeouts = [e for e in errors if "connect_timeout" in str(e)]
    assert len(timeouts) >= 2
    proxy.blackhole(False)
    await connecting
    assert (await service.ask("through")).answer == f"{ECHO}through"
    await service.close()


async def test_wrong_key_401_causes_no_retry_storm(nexus: Nexus, proxy: FaultProxy) -> None:
    service = WebSocketService(
        nexus.config(url=proxy.url(), api_key="wrong", max_reconnect_attempts=None)
    )
    with pytest.raises(AuthenticationError) as info:
        await service.connect()
    assert info.value.status == 401
    await supervisor_gone()
    await asyncio.sleep(10 * service.config.reconnect_interval)  # room for a storm
    assert proxy.connections == 1
    assert service.state.value.failed
    with pytest.raises(AuthenticationError):
        await service.ask("still no")
    assert proxy.connections == 1
    await service.close()


async def test_max_attempts_exhausted_against_refused_port(nexus: Nexus, proxy: FaultProxy) -> None:
    await proxy.stop_listening()
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=2))
    states = record_states(service)
    with pytest.raises(RetriesExhausted) as info:
        await service.connect()
    assert info.value.attempts == 3
    assert isinstance(info.value.last_error, NexusConnectionError)
    assert phases(states).count(Phase.CONNECTING) == 3
    state = service.state.value
    assert state.failed and state.error is not None and "3 connection attempts" in state.error
    await supervisor_gone()
    assert phases(states).count(Phase.CONNECTING) == 3
    with pytest.raises(RetriesExhausted):
        await service.ask("nobody home")
    # connect() again starts with a fresh budget.
    await proxy.resume_listening()
    await service.connect()
    assert (await service.ask("home again")).answer == f"{ECHO}home again"
    await service.close()


async def test_max_attempts_counts_accepted_then_reset_connections(
    nexus: Nexus, proxy: FaultProxy
) -> None:
    proxy.refuse()  # the port accepts, then resets at once
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=2))
    states = record_states(service)
    with pytest.raises(RetriesExhausted) as info:
        await service.connect()
    await supervisor_gone()
    assert info.value.attempts == 3
    assert phases(states).count(Phase.CONNECTING) == 3
    # One socket per attempt: aiohttp's own silent retry of the upgrade is off.
    assert proxy.refused_connections == 3
    await service.close()


async def test_outbox_full_while_reconnecting_drops_nothing(script_server: Any) -> None:
    server = await script_server(answer_all)
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        service = WebSocketService(
            server.config(url=proxy.url(), outbox_limit=3, max_reconnect_attempts=None)
        )
        got: list[ResponseMessage] = []
        service.on_response(got.append)
        await service.connect()
        await proxy.stop_listening()
        await proxy.cut()
        await wait_for(lambda: service.state.value.phase is Phase.WAITING)
        depths: list[int] = []
        service.outbox_depth.subscribe(depths.append)
        ids = [service.send_query(f"q{i}") for i in range(3)]
        with pytest.raises(OutboxFull):
            service.send_query("one too many")
        assert service.outbox_size == 3 and service.outbox_depth.value == 3
        assert depths == [0, 1, 2, 3]
        await proxy.resume_listening()
        await wait_for(lambda: len(got) == 3)
        assert [m.id for m in got] == ids
        assert [a["id"] for a in server.asks()] == ids  # in order, none lost, none extra
        await wait_for(lambda: depths[-1] == 0)
        await service.close()


async def test_outbox_full_before_connect_then_delivered_in_order(script_server: Any) -> None:
    server = await script_server(answer_all)
    service = WebSocketService(server.config(outbox_limit=3))
    depths: list[int] = []
    service.outbox_depth.subscribe(depths.append)
    got: list[ResponseMessage] = []
    service.on_response(got.append)
    ids = [service.send_query(f"early {i}") for i in range(3)]
    with pytest.raises(OutboxFull):
        service.send({"type": "note", "id": "n1", "payload": {}})  # any message counts
    with pytest.raises(OutboxFull):
        service.send_query("one too many")
    assert service.outbox_size == 3 and service.pending_count == 3
    assert depths == [0, 1, 2, 3]
    assert server.requests == 0
    await service.connect()
    await wait_for(lambda: len(got) == 3)
    assert [m.id for m in got] == ids
    assert [a["id"] for a in server.asks()] == ids
    assert len(server.received) == 3  # the refused note never went out
    await wait_for(lambda: depths[-1] == 0)
    await service.close()


async def test_ask_that_times_out_while_queued_is_never_sent(
    nexus: Nexus, proxy: FaultProxy
) -> None:
    await proxy.stop_listening()
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=None))
    connecting = asyncio.ensure_future(service.connect())
    with pytest.raises(RequestTimeout):
        await service.ask("too late", timeout=0.2)
    cancelled = asyncio.ensure_future(service.ask("changed my mind"))
    await wait_for(lambda: service.pending_count == 1)
    cancelled.cancel()
    await wait_for(lambda: service.pending_count == 0)
    await proxy.resume_listening()
    await connecting
    assert (await service.ask("in time")).answer == f"{ECHO}in time"
    # Abandoned asks were skipped in the outbox: the server saw only the last one.
    assert nexus.stats.asks_received == 1
    await service.close()


async def test_latency_and_a_cut_with_asks_in_flight(nexus: Nexus, proxy: FaultProxy) -> None:
    proxy.latency = 0.05
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=None))
    seen = responses_by_id(service)
    await service.connect()
    asks = [asyncio.ensure_future(service.ask(f"slow link {i}")) for i in range(10)]
    await wait_for(lambda: nexus.stats.asks_received >= 5)
    await proxy.cut()
    answers = await asyncio.gather(*asks)
    assert [a.answer for a in answers] == [f"{ECHO}slow link {i}" for i in range(10)]
    assert len(seen) == 10 and set(seen.values()) == {1}
    stats = nexus.stats
    assert stats.engine_calls >= 10
    assert stats.engine_calls + stats.asks_replayed <= stats.asks_received
    await service.close()


async def test_disconnect_with_asks_pending_while_reconnecting(
    nexus: Nexus, proxy: FaultProxy
) -> None:
    service = WebSocketService(nexus.config(url=proxy.url(), max_reconnect_attempts=None))
    seen = responses_by_id(service)
    await service.connect()
    await proxy.stop_listening()
    await proxy.cut()
    await wait_for(lambda: service.state.value.phase is Phase.WAITING)
    awaited = asyncio.ensure_future(service.ask("never sent"))
    fire_and_forget = service.send_query("sent after the next connect")
    await wait_for(lambda: service.pending_count == 2)
    service.disconnect()
    # The awaited ask fails at once and clearly (the deadline only guards a hang).
    with pytest.raises(ConnectionClosed, match="disconnect"):
        await asyncio.wait_for(awaited, 5)
    assert service.state.value.phase is Phase.DISCONNECTED
    await supervisor_gone()
    # Nothing awaits the fire-and-forget ask: it stays queued for the next connect().
    assert service.pending_count == 1

    await proxy.resume_listening()
    await service.connect()
    assert (await service.ask("again")).answer == f"{ECHO}again"
    await wait_for(lambda: fire_and_forget in seen)
    assert set(seen.values()) == {1} and len(seen) == 2
    assert nexus.stats.asks_received == 2  # the failed ask never went out
    await service.close()


# -- server faults: close codes ------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1009, 1011, 1012, 1013, 4000, 4429])
async def test_retryable_close_reconnects_and_resends(script_server: Any, code: int) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.next_ask()  # received, never answered
            if code == 1006:
                conn.abort()
            else:
                await conn.close(code)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config())
    errors = errors_of(service)
    states = record_states(service)
    await service.connect()
    assert (await service.ask("survive")).answer == "re: survive"
    assert server.connections == 2
    first, resent = server.asks()
    assert first["id"] == resent["id"]
    (lost,) = waiting(states)
    assert lost.close_code == code and lost.attempt == 1 and lost.reconnecting
    assert any(isinstance(e, NexusConnectionError) and e.close_code == code for e in errors)
    assert service.state.value.connected
    await service.close()


@pytest.mark.parametrize("code", [4401, 4403])
async def test_fatal_close_stops_for_good(script_server: Any, code: int) -> None:
    async def script(conn: Conn) -> None:
        await conn.next_ask()
        await conn.close(code, "go away")

    server = await script_server(script)
    service = WebSocketService(server.config(max_reconnect_attempts=None))
    errors = errors_of(service)
    await service.connect()
    with pytest.raises(AuthenticationError) as info:
        await service.ask("doomed")
    assert info.value.close_code == code
    await supervisor_gone()
    await asyncio.sleep(10 * service.config.reconnect_interval)  # room for a retry
    assert server.requests == 1
    state = service.state.value
    assert state.failed and state.close_code == code and state.error
    assert any(isinstance(e, AuthenticationError) for e in errors)
    with pytest.raises(AuthenticationError):
        await service.ask("after the end")
    await service.close()


@pytest.mark.parametrize("how", ["error_frame", "close_reason"])
async def test_4429_waits_at_least_retry_after(script_server: Any, how: str) -> None:
    retry_after = 0.4  # 40x the backoff it overrides

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.next_ask()
            if how == "error_frame":
                await conn.send(
                    {
                        "type": "error",
                        "id": "",
                        "payload": {
                            "code": "rate_limited",
                            "message": "slow down",
                            "retry_after": retry_after,
                        },
                    }
                )
                await conn.close(4429)
            else:
                await conn.close(4429, f"retry_after={retry_after}")
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    await service.connect()
    assert (await service.ask("patient")).answer == "re: patient"
    assert server.requests == 2
    assert server.requested_at[1] - server.closed_at[0] >= retry_after
    (lost,) = waiting(states)
    assert lost.close_code == 4429 and lost.retry_in is not None
    assert lost.retry_in >= retry_after
    await service.close()


async def test_4429_without_retry_after_uses_backoff(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.next_ask()
            await conn.close(4429)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    await service.connect()
    assert (await service.ask("q")).answer == "re: q"
    (lost,) = waiting(states)
    assert lost.close_code == 4429 and lost.retry_in == pytest.approx(0.01)
    await service.close()


# -- server faults: HTTP refusals at the upgrade ---------------------------------------


async def test_http_403_is_fatal(script_server: Any) -> None:
    server = await script_server(answer_all, lambda i: web.Response(status=403))
    service = WebSocketService(server.config(max_reconnect_attempts=None))
    with pytest.raises(AuthenticationError) as info:
        await service.connect()
    assert info.value.status == 403
    await supervisor_gone()
    assert server.requests == 1 and server.connections == 0
    assert service.state.value.failed
    await service.close()


async def test_http_5xx_is_retried(script_server: Any) -> None:
    statuses = iter([500, 502, 503])

    def gate(index: int) -> web.StreamResponse | None:
        status = next(statuses, None)
        return None if status is None else web.Response(status=status)

    server = await script_server(answer_all, gate)
    service = WebSocketService(server.config())
    errors = errors_of(service)
    await service.connect()
    assert (await service.ask("q")).answer == "re: q"
    assert server.requests == 4 and server.connections == 1
    assert [getattr(e, "status", None) for e in errors] == [500, 502, 503]
    await service.close()


async def test_http_429_honours_retry_after_header(script_server: Any) -> None:
    def gate(index: int) -> web.StreamResponse | None:
        if index == 0:
            return web.Response(status=429, headers={"Retry-After": "0.4"})
        return None

    server = await script_server(answer_all, gate)
    service = WebSocketService(server.config(reconnect_jitter=0))
    await service.connect()
    assert server.requests == 2
    assert server.requested_at[1] - server.requested_at[0] >= 0.4
    await service.close()


# -- server faults: bad frames, drops ---------------------------------------------------


async def test_garbage_before_a_drop_settles_nothing(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            ask = await conn.next_ask()
            await conn.ws.send_str("{not json")
            await conn.ws.send_bytes(b"\x00\x01binary")
            await conn.ws.send_str(json.dumps([1, 2, 3]))
            # The right id with a wrong payload must not settle the ask.
            await conn.send({"type": "response", "id": ask["id"], "payload": {"answer": 7}})
            await conn.close(1011)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config())
    errors = errors_of(service)
    await service.connect()
    assert (await service.ask("clean")).answer == "re: clean"
    assert len([e for e in errors if isinstance(e, ProtocolError)]) == 4
    assert server.connections == 2
    await service.close()


async def test_oversized_frame_is_reported_and_reconnects(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            ask = await conn.next_ask()
            await conn.answer(ask, "x" * 4096)  # over the client's max_message_size
            await conn.drain()
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(max_message_size=1024))
    errors = errors_of(service)
    states = record_states(service)
    await service.connect()
    assert (await service.ask("small please")).answer == "re: small please"
    assert any(isinstance(e, NexusConnectionError) and e.close_code == 1009 for e in errors)
    (lost,) = waiting(states)
    assert lost.close_code == 1009
    first, resent = server.asks()
    assert first["id"] == resent["id"]
    await service.close()


async def test_drop_after_n_asks_repeatedly(script_server: Any) -> None:
    per_connection, cycles = 3, 4
    drops = itertools.cycle([None, 1011, 1001, 1000])  # None: abort the TCP connection

    async def script(conn: Conn) -> None:
        answered = 0
        while (frame := await conn.next_frame()) is not None:
            if conn.index < cycles and answered == per_connection:
                code = next(drops)
                if code is None:
                    conn.abort()
                else:
                    await conn.close(code)
                return
            await conn.answer(frame)
            answered += 1

    server = await script_server(script)
    service = WebSocketService(server.config(max_reconnect_attempts=None))
    seen = responses_by_id(service)
    await service.connect()
    total = (per_connection + 1) * cycles
    for i in range(total):
        assert (await service.ask(f"n{i}")).answer == f"re: n{i}"
    assert server.connections == cycles + 1
    assert len(seen) == total and set(seen.values()) == {1}
    ids = [a["id"] for a in server.asks()]
    assert len(ids) == total + cycles  # each dropping ask was sent again, once
    assert set(Counter(ids).values()) <= {1, 2}
    await service.close()


async def test_accept_then_drop_exhausts_the_budget(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        conn.abort()

    server = await script_server(script)
    service = WebSocketService(server.config(max_reconnect_attempts=3))
    states = record_states(service)
    # Each upgrade succeeds, but the link dies before its first frame or the
    # challenge grace: never reported open, so connect() sees the budget run out.
    with pytest.raises(RetriesExhausted):
        await service.connect()
    await wait_for(lambda: service.state.value.failed)
    await supervisor_gone()
    assert server.connections == 4
    assert [s.attempt for s in waiting(states)] == [1, 2, 3]
    error = service.state.value.error
    assert error is not None and "4 connection attempts" in error
    with pytest.raises(RetriesExhausted):
        await service.ask("no more")
    await service.close()


# -- delivery across reconnects ----------------------------------------------------------


async def test_request_timeout_bounds_an_ask_across_a_reconnect(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.next_ask()
        if conn.index == 0:
            await conn.close(1012)
            return
        await conn.drain()  # the re-sent ask is never answered either

    server = await script_server(script)
    # Room for the reconnect and the re-send before the deadline, on a loaded machine too.
    service = WebSocketService(server.config(request_timeout=3.0))
    await service.connect()
    pending = asyncio.ensure_future(service.ask("will time out"))
    await wait_for(lambda: len(server.asks()) == 2)
    first, resent = server.asks()
    assert first["id"] == resent["id"]
    with pytest.raises(RequestTimeout) as info:
        await pending
    assert first["id"] in str(info.value)
    assert service.pending_count == 0
    assert service.state.value.connected
    await service.close()


async def test_out_of_order_answers_after_a_reconnect(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        asks = [await conn.next_ask() for _ in range(3)]
        if conn.index == 0:
            await conn.close(1001)
            return
        for ask in reversed(asks):
            await conn.answer(ask)
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    await service.connect()
    answers = await asyncio.gather(*(service.ask(q) for q in ("a", "b", "c")))
    assert [a.answer for a in answers] == ["re: a", "re: b", "re: c"]
    ids = [a["id"] for a in server.asks()]
    assert ids[:3] == ids[3:]  # re-sent in the order they were made
    await service.close()


async def test_resent_asks_go_out_before_messages_queued_later(script_server: Any) -> None:
    server = await script_server(swallow_first_connection)
    async with FaultProxy("127.0.0.1", server.server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url(), max_reconnect_attempts=None))
        await service.connect()
        first = [asyncio.ensure_future(service.ask(q)) for q in ("a", "b")]
        await wait_for(lambda: len(server.asks()) == 2)
        await proxy.stop_listening()
        await proxy.cut()
        await wait_for(lambda: service.state.value.phase is Phase.WAITING)
        later = [asyncio.ensure_future(service.ask(q)) for q in ("c", "d")]
        await wait_for(lambda: service.pending_count == 4)
        await proxy.resume_listening()
        answers = await asyncio.gather(*first, *later)
        assert [a.answer for a in answers] == ["re: a", "re: b", "re: c", "re: d"]
        queries = [a["payload"]["query"] for a in server.asks()]
        assert queries == ["a", "b", "a", "b", "c", "d"]
        await service.close()


async def test_duplicate_answers_after_a_reconnect_are_dropped(script_server: Any) -> None:
    first_ids: list[str] = []

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            a, b = await conn.next_ask(), await conn.next_ask()
            first_ids.extend([a["id"], b["id"]])
            await conn.answer(a)
            await conn.close(1012)  # b is on the wire, unanswered
            return
        b = await conn.next_ask()
        assert b["id"] == first_ids[1]
        await conn.answer({"id": first_ids[0], "payload": {"query": "a"}})  # stale again
        await conn.answer(b)
        await conn.answer(b)
        await conn.send({"type": "response", "id": "sentinel", "payload": {"answer": "end"}})
        await conn.drain()

    server = await script_server(script)
    service = WebSocketService(server.config())
    got: list[ResponseMessage] = []
    service.on_response(got.append)
    await service.connect()
    a, b = await asyncio.gather(service.ask("a"), service.ask("b"))
    assert (a.answer, b.answer) == ("re: a", "re: b")
    await wait_for(lambda: any(m.id == "sentinel" for m in got))
    assert [m.id for m in got] == [*first_ids, "sentinel"]
    assert server.connections == 2
    await service.close()


# -- the state stream and the backoff ---------------------------------------------------


async def test_state_stream_through_a_reconnect_cycle(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.next_ask()
            await conn.close(1012)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    await service.connect()
    assert (await service.ask("q")).answer == "re: q"
    await service.close()

    assert phases(states) == [
        Phase.DISCONNECTED,
        Phase.CONNECTING,
        Phase.CONNECTED,
        Phase.WAITING,
        Phase.CONNECTING,
        Phase.CONNECTED,
        Phase.DISCONNECTED,
        Phase.CLOSED,
    ]
    assert all(a != b for a, b in itertools.pairwise(states))  # each state emitted once
    first_try, lost, retry, back = states[1], states[3], states[4], states[5]
    assert not first_try.reconnecting and first_try.attempt == 0
    assert lost.reconnecting and lost.attempt == 1
    assert lost.retry_in == pytest.approx(0.01) and lost.close_code == 1012
    assert lost.error is not None and "1012" in lost.error
    assert retry.reconnecting and retry.attempt == 1 and retry.retry_in is None
    assert back.connected and not back.reconnecting and back.error is None


async def test_backoff_grows_and_is_capped(nexus: Nexus, proxy: FaultProxy) -> None:
    await proxy.stop_listening()
    service = WebSocketService(
        nexus.config(
            url=proxy.url(),
            reconnect_interval=0.01,
            max_reconnect_interval=0.08,
            reconnect_jitter=0,
            max_reconnect_attempts=None,
        )
    )
    states = record_states(service)
    connecting = asyncio.ensure_future(service.connect())
    await wait_for(lambda: len(waiting(states)) >= 7)
    await proxy.resume_listening()
    await connecting
    first = waiting(states)[:7]
    assert [s.attempt for s in first] == [1, 2, 3, 4, 5, 6, 7]
    assert [s.retry_in for s in first] == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.08, 0.08, 0.08])
    await service.close()


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "accept-then-drop"])
async def test_retry_counter_resets_only_after_a_healthy_connection(
    script_server: Any, healthy: bool
) -> None:
    cycles = 4
    # The retry budget's clock is injected: how long a connection lasted is what the
    # test says, not what a loaded machine's scheduling makes of it.
    now = [0.0]

    async def script(conn: Conn) -> None:
        if conn.index < cycles:
            if healthy:
                # Stay up longer than reset_backoff_after, by the client's clock,
                # from the moment the client sees the connection open.
                await wait_for(lambda: service.state.value.connected)
                now[0] += 1.0
            await conn.close(1012)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(
        server.config(
            reconnect_jitter=0,
            max_reconnect_interval=1.0,
            reset_backoff_after=0.5,
            # After a healthy connection the whole budget is there again: one retry
            # per outage is enough however many outages come.
            max_reconnect_attempts=1 if healthy else None,
        )
    )
    service._core.reconnector.clock = lambda: now[0]
    states = record_states(service)
    await service.connect()
    await wait_for(lambda: server.connections == cycles + 1 and service.state.value.connected)
    lost = waiting(states)
    if healthy:
        assert [s.attempt for s in lost] == [1, 1, 1, 1]
        assert [s.retry_in for s in lost] == pytest.approx([0.01] * 4)
    else:
        assert [s.attempt for s in lost] == [1, 2, 3, 4]
        assert [s.retry_in for s in lost] == pytest.approx([0.01, 0.02, 0.04, 0.08])
    await service.close()


async def test_should_reconnect_overrides_a_fatal_close(script_server: Any) -> None:
    asked: list[NexusConnectionError] = []

    def should_reconnect(error: NexusConnectionError) -> bool:
        asked.append(error)
        return True

    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.next_ask()
            await conn.close(4401)
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(should_reconnect=should_reconnect))
    await service.connect()
    assert (await service.ask("let me back in")).answer == "re: let me back in"
    assert server.connections == 2
    assert [e.close_code for e in asked] == [4401]
    assert isinstance(asked[0], AuthenticationError)
    await service.close()


async def test_should_reconnect_can_make_a_retryable_close_fatal(script_server: Any) -> None:
    async def script(conn: Conn) -> None:
        await conn.next_ask()
        await conn.close(1012)

    server = await script_server(script)
    service = WebSocketService(
        server.config(should_reconnect=lambda e: e.close_code != 1012, max_reconnect_attempts=None)
    )
    await service.connect()
    with pytest.raises(NexusConnectionError) as info:
        await service.ask("q")
    assert info.value.close_code == 1012
    await supervisor_gone()
    assert server.requests == 1
    assert service.state.value.failed
    await service.close()


# -- lifecycle hygiene -------------------------------------------------------------------


async def test_close_during_backoff_leaves_nothing(nexus: Nexus, proxy: FaultProxy) -> None:
    await proxy.stop_listening()
    service = WebSocketService(
        nexus.config(url=proxy.url(), reconnect_interval=5.0, max_reconnect_interval=5.0)
    )
    connecting = asyncio.ensure_future(service.connect())
    await wait_for(lambda: service.state.value.phase is Phase.WAITING)
    await service.close()  # mid-sleep: must not wait the 5 s out
    with pytest.raises(ConnectionClosed):
        await connecting
    assert service.state.value.phase is Phase.CLOSED
    assert library_tasks() == []


async def test_close_during_a_hanging_upgrade_leaves_nothing(
    nexus: Nexus, proxy: FaultProxy
) -> None:
    proxy.blackhole()
    service = WebSocketService(nexus.config(url=proxy.url(), connect_timeout=30.0))
    connecting = asyncio.ensure_future(service.connect())
    await wait_for(lambda: proxy.open_connections == 1)
    await service.close()
    with pytest.raises(ConnectionClosed):
        await connecting
    assert library_tasks() == []
    await wait_for(lambda: proxy.open_connections == 0)  # the socket went with it


async def test_rapid_disconnect_connect_churn_loses_nothing(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    seen = responses_by_id(service)
    ids: list[str] = []
    for i in range(20):
        await service.connect()
        ids.append(service.send_query(f"churn {i}"))
        await asyncio.sleep(0)  # let the writer start on it, sometimes
        service.disconnect()  # no waiting for the old connection to finish
    await service.connect()
    await wait_for(lambda: set(ids) <= set(seen))
    assert len(seen) == 20 and set(seen.values()) == {1}
    await wait_for(lambda: nexus.stats.connections_open == 1)
    await service.close()
    assert library_tasks() == []
    await wait_for(lambda: nexus.stats.connections_open == 0)


async def test_connect_disconnect_cycles_leave_no_socket(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    for i in range(10):
        await service.connect()
        assert (await service.ask(f"cycle {i}")).answer == f"{ECHO}cycle {i}"
        service.disconnect()
        await wait_for(lambda: nexus.stats.connections_open == 0)
    await service.close()
    assert nexus.stats.connections_total == 10
    assert library_tasks() == []
