"""disconnect() and reconnect() called from an ``errors`` subscriber told that the
connection failed: the subscriber's command is the last word, as from a ``state``
subscriber (the failure is reported before the client decides about it)."""

from __future__ import annotations

from typing import Any

from nexus_reactive import NexusConnectionError, NexusError, Phase, WebSocketService

from .conftest import library_tasks
from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import Conn, answer_all, phases, record_states
from .waiting import wait_for


async def always_1011(conn: Conn) -> None:
    await conn.close(1011)


async def first_1011(conn: Conn) -> None:
    if conn.index == 0:
        await conn.close(1011)
        return
    await answer_all(conn)


async def test_disconnect_from_an_errors_subscriber_stays_disconnected(
    script_server: Any,
) -> None:
    server = await script_server(always_1011)
    service = WebSocketService(server.config(max_reconnect_attempts=None))
    states = record_states(service)

    def stop_on_failure(error: NexusError) -> None:
        if isinstance(error, NexusConnectionError):
            service.disconnect()

    service.errors.subscribe(stop_on_failure)
    service.reconnect()
    await wait_for(lambda: library_tasks() == [], message="the supervisor to stop")
    assert server.connections == 1
    # Not WAITING with a retry_in that no task will ever keep.
    assert service.state.value.phase is Phase.DISCONNECTED, phases(states)
    assert phases(states)[-1] is Phase.DISCONNECTED
    assert service.state.value.retry_in is None
    await service.close()


async def test_reconnect_from_an_errors_subscriber_starts_afresh(script_server: Any) -> None:
    server = await script_server(first_1011)
    # A backoff of a minute: only reconnect() brings the second attempt soon.
    service = WebSocketService(server.config(reconnect_interval=60.0, reconnect_jitter=0))
    states = record_states(service)
    told: list[NexusError] = []

    def retry_now(error: NexusError) -> None:
        if isinstance(error, NexusConnectionError) and not told:
            told.append(error)
            service.reconnect()

    service.errors.subscribe(retry_now)
    await service.connect()
    assert told and server.connections == 2
    after = states[[s.reason for s in states].index("reconnect() was called") :]
    # The attempt reconnect() started has a fresh budget, and nothing replaces it
    # with the wait the failed connection would have had.
    assert Phase.WAITING not in phases(after), phases(states)
    assert all(s.attempt == 0 for s in after), [(s.phase, s.attempt) for s in states]
    assert service.state.value.connected
    await service.close()
