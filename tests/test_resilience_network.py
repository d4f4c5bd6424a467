"""Resilience under network faults: a FaultProxy between the client and the reference server
(RST cuts, a refused port, a blackholed half-open link, latency, a cut mid-frame).
The fixtures and helpers, and what the waits are sized for: tests/test_resilience.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from nexus_reactive import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionState,
    NexusConnectionError,
    OutboxFull,
    Phase,
    RequestTimeout,
    ResponseMessage,
    RetriesExhausted,
    WebSocketService,
)

from .conftest import Nexus, ServerFactory, gated_engine
from .faults import FaultProxy, wait_for

# The fixtures; the autouse one checks that no test leaves a library task behind.
from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import (
    ECHO,
    answer_all,
    errors_of,
    phases,
    record_states,
    responses_by_id,
    supervisor_gone,
    waiting,
)

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
