"""The waits a server asks for before the next attempt (close 4429 with ``retry_after``,
an upgrade refused with ``Retry-After``), against hostile values, over real sockets."""

from __future__ import annotations

import math
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import WebSocketService
from nexus_reactive.core.policy import close_retry_after, header_retry_after
from nexus_reactive.testing import wait_until

from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import Conn, answer_all, record_states, waiting

# Not a number of seconds anybody can wait out: Python's float() reads them as infinity.
ENDLESS = ["inf", "Infinity", "1e999"]


@pytest.mark.parametrize("value", ENDLESS)
async def test_a_4429_asking_for_an_endless_wait_falls_back_to_backoff(
    script_server: Any, value: str
) -> None:
    async def script(conn: Conn) -> None:
        if conn.index == 0:
            await conn.close(4429, f"retry_after={value}")
            return
        await answer_all(conn)

    server = await script_server(script)
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    service.reconnect()
    await wait_until(lambda: waiting(states), message="the wait after 4429")
    (lost,) = waiting(states)
    assert lost.close_code == 4429 and lost.retry_in is not None
    assert math.isfinite(lost.retry_in)
    await service.connect()  # the second attempt comes: not parked for good
    assert (await service.ask("after the wait")).answer == "re: after the wait"
    await service.close()


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("value", ENDLESS)
async def test_a_refused_upgrade_asking_for_an_endless_wait_falls_back_to_backoff(
    script_server: Any, status: int, value: str
) -> None:
    def gate(index: int) -> web.StreamResponse | None:
        if index == 0:
            return web.Response(status=status, headers={"Retry-After": value})
        return None

    server = await script_server(answer_all, gate)
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    service.reconnect()
    await wait_until(lambda: waiting(states), message="the wait after the refusal")
    (refused,) = waiting(states)
    assert refused.retry_in is not None and math.isfinite(refused.retry_in)
    await service.connect()
    assert server.requests == 2
    await service.close()


async def test_a_503_upgrade_with_retry_after_is_waited_out(script_server: Any) -> None:
    """RFC 9110: a 503's Retry-After says how long the service is expected to be down.
    The same 503 from a proxy is waited out already; the server's own must be too."""

    def gate(index: int) -> web.StreamResponse | None:
        if index == 0:
            return web.Response(status=503, headers={"Retry-After": "0.4"})
        return None

    server = await script_server(answer_all, gate)
    # The backoff alone would retry after 0.01 s.
    service = WebSocketService(server.config(reconnect_jitter=0))
    states = record_states(service)
    await service.connect()
    assert server.requests == 2
    (refused,) = waiting(states)
    assert refused.retry_in is not None and refused.retry_in >= 0.4
    assert server.requested_at[1] - server.requested_at[0] >= 0.4
    await service.close()


@pytest.mark.parametrize("value", [*ENDLESS, "-inf", "nan", "NaN"])
def test_non_finite_waits_are_no_waits(value: str) -> None:
    assert header_retry_after(value) is None
    assert close_retry_after(f"retry_after={value}") is None
    assert close_retry_after(value) is None
