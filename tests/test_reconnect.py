"""``reconnect()``: connect again now, with a fresh budget, over real loopback sockets.

From every state: a backoff wait, an open connection with asks in flight, a client
that gave up (a fatal 401, attempts exhausted), a disconnected or never-started one;
and from hostile callers: a subscriber that calls it, a storm of calls, another
thread, a closed service.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from nexus_reactive import (
    AuthenticationError,
    ConnectionState,
    Phase,
    ResponseMessage,
    RetriesExhausted,
    UsageError,
    WebSocketConfig,
    WebSocketService,
    use_websocket,
    use_websocket_sync,
)
from nexus_reactive.core.demand import REASON_RECONNECT

from .conftest import Nexus, ServerFactory, gated_engine, library_tasks
from .waiting import EVENTUALLY, wait_for, wait_for_state

#: A backoff longer than any wait of these tests (EVENTUALLY): an attempt that comes
#: in time came because reconnect() ended the wait.
LONG_BACKOFF = {"reconnect_interval": 60.0, "max_reconnect_interval": 60.0, "reconnect_jitter": 0}


def record(service: WebSocketService) -> list[ConnectionState]:
    states: list[ConnectionState] = []
    service.state.subscribe(states.append)
    return states


def reconnects(states: list[ConnectionState]) -> list[ConnectionState]:
    return [s for s in states if s.reason == REASON_RECONNECT]


def answers_by_id(service: WebSocketService) -> Counter[str]:
    seen: Counter[str] = Counter()
    service.on_response(lambda m: seen.update([m.id]))
    return seen


def supervisors() -> list[asyncio.Task[Any]]:
    return [t for t in library_tasks() if t.get_name() == "nexus-reactive"]


async def test_reconnect_ends_a_backoff_wait_at_once(nexus: Nexus) -> None:
    await nexus.stop()
    service = WebSocketService(nexus.config(**LONG_BACKOFF))
    states = record(service)
    connecting = asyncio.ensure_future(service.connect())
    await wait_for_state(service, "waiting")
    assert service.state.value.retry_in == 60.0
    await nexus.start()

    service.reconnect()

    assert service.state.value == ConnectionState(Phase.CONNECTING, reason=REASON_RECONNECT)
    await connecting  # connect() kept waiting, for the new connection
    assert service.state.value.connected
    assert [s.attempt for s in reconnects(states)] == [0]
    await service.close()


async def test_reconnect_resets_an_exhausted_budget(nexus: Nexus) -> None:
    await nexus.stop()
    service = WebSocketService(nexus.config(max_reconnect_attempts=1))
    with pytest.raises(RetriesExhausted):
        await service.connect()
    assert service.state.value.failed
    await nexus.start()

    service.reconnect()
    await service.connect()

    assert service.state.value.connected and service.state.value.attempt == 0
    assert (await service.ask("again")).answer == "You asked: again"
    await service.close()


async def test_reconnect_is_how_to_retry_a_fatal_error_once_it_is_fixed(nexus: Nexus) -> None:
    key = ["not the key"]
    service = WebSocketService(nexus.config(api_key=lambda: key[0]))
    with pytest.raises(AuthenticationError):
        await service.connect()
    with pytest.raises(AuthenticationError):  # said at once, not at a timeout
        await service.ask("too early")
    key[0] = nexus.key  # the user fixed it

    service.reconnect()
    await service.connect()

    assert (await service.ask("fixed")).answer == "You asked: fixed"
    await service.close()


async def test_reconnect_replaces_an_open_connection_and_loses_nothing(
    start_nexus: ServerFactory,
) -> None:
    gate = asyncio.Event()

    server = await start_nexus(engine=gated_engine(gate))
    stats = server.stats
    service = WebSocketService(server.config())
    seen = answers_by_id(service)
    states = record(service)
    await service.connect()
    slow = [asyncio.ensure_future(service.ask(f"slow {i}")) for i in range(5)]
    await wait_for(lambda: stats.asks_received == 5)
    service.send_query("queued before")

    service.reconnect()
    queued = [asyncio.ensure_future(service.ask(f"queued {i}")) for i in range(5)]
    await wait_for(lambda: stats.connections_total == 2 and stats.connections_open == 1)
    gate.set()
    answers = await asyncio.gather(*slow, *queued)

    assert [a.answer for a in answers] == [f"re: slow {i}" for i in range(5)] + [
        f"re: queued {i}" for i in range(5)
    ]
    await wait_for(lambda: len(seen) == 11)
    assert set(seen.values()) == {1}  # each answer once
    # The slow asks (and the fire-and-forget one, if it reached the old wire) went
    # again on the new connection, with their ids: each computed once.
    assert stats.engine_calls == 11 and stats.asks_replayed in (5, 6)
    assert [s.phase for s in reconnects(states)] == [Phase.CONNECTING]
    await service.close()
    assert library_tasks() == []


async def test_reconnect_twice_quickly_and_in_a_storm_opens_one_connection(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    await service.connect()

    service.reconnect()
    service.reconnect()
    for _ in range(50):
        service.reconnect()
    await service.connect()

    # The attempts replaced before they began never dialled: one old, one new.
    assert nexus.stats.connections_total == 2
    await wait_for(lambda: len(supervisors()) == 1 and nexus.stats.connections_open == 1)
    assert (await service.ask("after the storm")).answer == "You asked: after the storm"
    await service.close()
    assert library_tasks() == []


async def test_asks_interleaved_with_reconnects_are_each_answered_once(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config(max_reconnect_attempts=None))
    seen = answers_by_id(service)
    await service.connect()
    asks = []
    for round_ in range(10):
        asks += [asyncio.ensure_future(service.ask(f"{round_}.{i}")) for i in range(5)]
        service.reconnect()
        await asyncio.sleep(0)  # let some of them reach the wire between two reconnects

    answers = await asyncio.gather(*asks)

    assert [a.answer for a in answers] == [
        f"You asked: {r}.{i}" for r in range(10) for i in range(5)
    ]
    await wait_for(lambda: len(seen) == 50)
    assert set(seen.values()) == {1}
    await service.close()


async def test_reconnect_from_a_state_subscriber(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    done: list[ConnectionState] = []

    def once_connected(state: ConnectionState) -> None:
        if state.connected and not done:
            done.append(state)
            service.reconnect()  # re-entered: inside the connection's own publish

    states = record(service)
    service.state.subscribe(once_connected)
    await service.connect()

    await wait_for(lambda: nexus.stats.connections_total == 2)
    await wait_for_state(service, "connected")
    # Every subscriber saw the same states, in order, ending on the current one.
    assert states[-1] == service.state.value
    assert [s.phase for s in states[-3:]] == [Phase.CONNECTED, Phase.CONNECTING, Phase.CONNECTED]
    assert (await service.ask("still fine")).answer == "You asked: still fine"
    await service.close()


async def test_reconnect_from_a_subscriber_told_of_a_fatal_failure(nexus: Nexus) -> None:
    key = ["wrong"]
    service = WebSocketService(nexus.config(api_key=lambda: key[0]))

    def fix_and_retry(state: ConnectionState) -> None:
        if state.failed and key[0] != nexus.key:
            key[0] = nexus.key
            service.reconnect()

    service.state.subscribe(fix_and_retry)
    service.reconnect()  # never connected yet: reconnect() starts it too

    await wait_for_state(service, "connected")
    assert service._connection.failure is None
    assert (await service.ask("retried")).answer == "You asked: retried"
    await service.close()


async def test_reconnect_off_the_loops_thread_is_refused_and_does_nothing(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    await service.connect()

    with pytest.raises(UsageError, match=r"reconnect\(\) was called from thread"):
        await asyncio.to_thread(service.reconnect)

    assert service.state.value.connected and nexus.stats.connections_total == 1
    await service.close()


def test_reconnect_without_an_event_loop_says_so(nexus_key: str) -> None:
    service = WebSocketService(WebSocketConfig(url="ws://127.0.0.1:9", api_key=nexus_key))
    with pytest.raises(UsageError, match="needs a running asyncio event loop"):
        service.reconnect()


async def test_reconnect_on_a_closed_or_closing_service_is_refused(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    await service.connect()
    refused: list[BaseException] = []

    def during_close(state: ConnectionState) -> None:
        if state.phase is Phase.DISCONNECTED:
            try:
                service.reconnect()
            except UsageError as exc:
                refused.append(exc)

    service.state.subscribe(during_close)
    await service.close()

    assert len(refused) == 1 and "closed" in str(refused[0])
    with pytest.raises(UsageError, match="closed; create a new WebSocketService"):
        service.reconnect()
    assert library_tasks() == []


async def test_reconnect_after_disconnect_connects_again(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config())
    await service.connect()
    service.disconnect()
    await wait_for(lambda: nexus.stats.connections_open == 0)

    service.reconnect()

    await wait_for_state(service, "connected")
    await service.close()


async def test_the_store_reconnects_from_any_thread(nexus: Nexus) -> None:
    async with use_websocket(nexus.config()) as store:
        await wait_for_state(store, "connected")
        got: list[ResponseMessage] = []
        store.service.on_response(got.append)

        await asyncio.to_thread(store.reconnect)

        await wait_for(lambda: nexus.stats.connections_total == 2)
        await wait_for_state(store, "connected")
        store.send_message("after")
        await wait_for(lambda: len(got) == 1)
        store.reconnect()  # and from the loop's own thread
        await wait_for(lambda: nexus.stats.connections_total == 3)
    with pytest.raises(UsageError, match="store is closed"):
        store.reconnect()


async def test_the_sync_store_reconnects(nexus: Nexus) -> None:
    store = await asyncio.to_thread(use_websocket_sync, nexus.config())
    try:
        await asyncio.to_thread(store.wait_connected, EVENTUALLY)
        await asyncio.to_thread(store.reconnect)
        await wait_for(lambda: nexus.stats.connections_total == 2)
        state = await asyncio.to_thread(store.wait_connected, EVENTUALLY)
        assert state.connected
    finally:
        await asyncio.to_thread(store.close)
    with pytest.raises(UsageError, match="closed"):
        store.reconnect()
