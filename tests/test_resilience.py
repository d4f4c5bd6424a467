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

This file: the state stream, the backoff and lifecycle hygiene. Network faults:
test_resilience_network.py; server faults: test_resilience_server_faults.py; delivery
across reconnects: test_resilience_delivery.py. Their fixtures: resilience_kit.py.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from nexus_reactive import (
    AuthenticationError,
    ConnectionClosed,
    NexusConnectionError,
    Phase,
    WebSocketService,
)

from .conftest import Nexus, library_tasks
from .faults import FaultProxy, wait_for

# The fixtures; the autouse one checks that no test leaves a library task behind.
from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import (
    ECHO,
    Conn,
    answer_all,
    phases,
    record_states,
    responses_by_id,
    supervisor_gone,
    waiting,
)

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
