"""Resilience under server faults: scripted servers (tests/resilience_servers.py) that close
with each close code, refuse the upgrade with HTTP statuses, send bad frames or drop.
The fixtures and helpers, and what the waits are sized for: tests/test_resilience.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import (
    AuthenticationError,
    NexusConnectionError,
    ProtocolError,
    RetriesExhausted,
    WebSocketService,
)

from .faults import wait_for

# The fixtures; the autouse one checks that no test leaves a library task behind.
from .resilience_kit import no_task_left_behind_fixture, proxy_fixture, script_server_fixture  # noqa: F401
from .resilience_servers import (
    Conn,
    answer_all,
    errors_of,
    record_states,
    responses_by_id,
    supervisor_gone,
    waiting,
)

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


async def test_giving_up_on_4429_says_the_server_is_rate_limiting(script_server: Any) -> None:
    # Every connection is closed with 4429 at its first ask: when the budget runs out,
    # the error says what would help (pace with rate=), not "is the server running?".
    async def script(conn: Conn) -> None:
        await conn.next_ask()
        await conn.close(4429, "retry_after=0.01")

    server = await script_server(script)
    service = WebSocketService(server.config(max_reconnect_attempts=1))
    await service.connect()
    with pytest.raises(RetriesExhausted) as info:
        await service.ask("too fast")
    said = str(info.value)
    assert "gave up after 2 connection attempts" in said
    assert "rate limiting this client: set rate= (and burst=) under its limit" in said
    assert "Check that the server is running" not in said
    assert info.value.close_code == 4429
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


async def test_giving_up_on_http_429_says_the_server_is_rate_limiting(
    script_server: Any,
) -> None:
    def gate(index: int) -> web.StreamResponse | None:
        return web.Response(status=429, headers={"Retry-After": "0.01"})

    server = await script_server(answer_all, gate)
    service = WebSocketService(server.config(max_reconnect_attempts=1))
    with pytest.raises(RetriesExhausted) as info:
        await service.connect()
    said = str(info.value)
    assert "rate limiting this client: set rate= (and burst=)" in said
    assert info.value.status == 429
    assert server.requests == 2
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
