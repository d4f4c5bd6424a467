"""``service.metrics`` (``metrics=True``): the pure counters, then the service over real
sockets against servers that repeat, stall, refuse and cut, and callers that re-enter,
raise, cancel and time out. Counted, never timed (``make bench`` measures the cost).
The metrics stream: test_metrics_stream.py."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web

import nexus_reactive
from nexus_reactive import (
    ConfigError,
    ConnectionClosed,
    Latency,
    NexusConnectionError,
    RequestTimeout,
    ServerError,
    UsageError,
    WebSocketConfig,
    WebSocketService,
)
from nexus_reactive.core.metrics import (
    ASK_OUTCOMES,
    RECONNECT_CAUSES,
    Counters,
    LatencyWindow,
    cause_of,
)
from nexus_reactive.core.policy import close_error, http_error
from nexus_reactive.testing import FaultProxy, NexusServer

from .conftest import Scripted, fail_only_fail, response_frame
from .waiting import wait_for, wait_for_state

# -- the pure part ------------------------------------------------------------------------


def test_a_latency_window_keeps_the_last_samples_and_ranks_them() -> None:
    window = LatencyWindow(4)
    assert window.summary() == Latency()  # no samples: no numbers, not zeros
    for sample in (9.0, 9.0, 1.0, 2.0, 3.0, 4.0):  # the two 9s fall out of the window
        window.add(sample)
    assert window.summary() == Latency(samples=4, p50=2.0, p99=4.0, max=4.0)
    assert window.total == 6
    window.add(0.5)
    assert window.summary() == Latency(samples=4, p50=2.0, p99=4.0, max=4.0)
    one = LatencyWindow(1024)
    for i in range(1, 101):
        one.add(i / 1000)
    summary = one.summary()
    assert (summary.p50, summary.p99, summary.max) == (0.05, 0.099, 0.1)  # nearest rank
    assert "p50 50.00 ms" in str(summary)
    with pytest.raises(ValueError, match="at least one"):
        LatencyWindow(0)


def test_a_latency_window_holds_a_fixed_amount_of_memory() -> None:
    window = LatencyWindow(1024)
    ring = window._ring
    size = ring.buffer_info()[1]
    for i in range(100_000):
        window.add(float(i))
    assert window._ring is ring and ring.buffer_info()[1] == size == 1024
    assert window.summary().samples == 1024 and window.summary().max == 99_999.0


def test_reconnect_causes_come_from_the_error() -> None:
    assert cause_of(close_error(None)) == "connection_lost"
    assert cause_of(close_error(1006)) == "connection_lost"
    assert cause_of(close_error(1012)) == "server_closed"
    assert cause_of(close_error(1000)) == "server_closed"
    assert cause_of(close_error(1009)) == "message_too_big"
    assert cause_of(close_error(4429)) == "rate_limited"
    assert cause_of(http_error(429)) == "rate_limited"
    assert cause_of(http_error(503)) == "upgrade_refused"
    explicit = NexusConnectionError("x", close_code=1006, cause="heartbeat_timeout")
    assert cause_of(explicit) == "heartbeat_timeout"


def test_every_cause_the_code_names_is_in_the_vocabulary() -> None:
    """Each ``cause="..."`` in the package is documented in RECONNECT_CAUSES, and each
    cause there is one the code produces (by name, or by status and close code)."""
    named: set[str] = set()
    for path in Path(nexus_reactive.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "cause"
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                named.add(node.value.value)
    derived = {"rate_limited", "upgrade_refused", "connection_lost", "message_too_big"}
    derived.add("server_closed")
    assert named <= set(RECONNECT_CAUSES), named - set(RECONNECT_CAUSES)
    assert named | derived == set(RECONNECT_CAUSES)


def test_a_snapshot_is_immutable_and_does_not_move_with_the_counters() -> None:
    counts = Counters(window=8)
    counts.frames_in += 3
    counts.lost(close_error(1012))
    snapshot = counts.snapshot(outbox_depth=2, asks_pending=1)
    counts.frames_in += 1
    counts.lost(close_error(1012))
    assert snapshot.frames_in == 3 and snapshot.reconnects == {"server_closed": 1}
    assert snapshot.reconnects_total == 1 and (snapshot.outbox_depth, snapshot.asks_pending) == (
        2,
        1,
    )
    with pytest.raises(AttributeError):
        snapshot.frames_in = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.reconnects["server_closed"] = 9  # type: ignore[index]
    assert counts.snapshot(0, 0).reconnects == {"server_closed": 2}


def test_each_outcome_has_one_counter() -> None:
    counts = Counters()
    for outcome in ASK_OUTCOMES:
        counts.ended(outcome)
    # server_error and failed are failures; closed is not an end the counters count.
    assert (counts.asks_answered, counts.asks_failed) == (1, 2)
    assert (counts.asks_timed_out, counts.asks_cancelled) == (1, 1)


def test_metrics_are_off_by_default_and_say_how_to_turn_them_on() -> None:
    service = WebSocketService(WebSocketConfig(api_key="k"))
    with pytest.raises(UsageError, match=r"WebSocketConfig\(metrics=True\)"):
        _ = service.metrics
    assert service._meter is None  # nothing counts: the hot path is untouched


@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_a_bad_metrics_interval_is_refused_in_its_words(value: float) -> None:
    with pytest.raises(ConfigError, match="metrics_interval must be a positive"):
        WebSocketConfig(metrics_interval=value)


def test_a_bad_telemetry_value_is_refused_in_its_words() -> None:
    with pytest.raises(ConfigError, match=r"telemetry must be True, False or a"):
        WebSocketConfig(telemetry="yes")  # type: ignore[arg-type]


# -- over real sockets ------------------------------------------------------------------------


async def test_frames_bytes_and_asks_are_counted_exactly(scripted: Any) -> None:
    """The server records the byte length of every frame it gets and sends known ones:
    the client's counts match both ends exactly."""
    got: list[int] = []
    sent: list[int] = []

    async def answer(ws: web.WebSocketResponse, conn: Scripted) -> None:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                return
            got.append(len(msg.data.encode()))
            frame = response_frame(json.loads(msg.data)["id"], "x" * len(got))
            sent.append(len(frame.encode()))
            await ws.send_str(frame)

    server = await scripted(answer)
    async with WebSocketService(server.config(metrics=True, heartbeat=None)) as service:
        for i in range(20):
            await service.ask(f"question {i}")
        m = service.metrics.value
    assert (m.frames_out, m.bytes_out) == (20, sum(got))
    assert (m.frames_in, m.bytes_in) == (20, sum(sent))
    assert (m.asks, m.asks_answered, m.asks_pending, m.outbox_depth) == (20, 20, 0, 0)
    assert m.ask_latency.samples == 20 and m.ask_latency.p50 is not None
    assert m.ask_latency.p50 <= m.ask_latency.p99 <= m.ask_latency.max  # type: ignore[operator]
    assert m.connects == 1 and m.reconnects == {} and m.duplicates_dropped == 0
    assert m.ping_rtt == Latency()  # heartbeat=None: no pings to time


async def test_a_server_that_repeats_every_answer_counts_dropped_duplicates(
    scripted: Any,
) -> None:
    async def thrice(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            for _ in range(3):
                await ws.send_str(response_frame(frame["id"], "again"))

    server = await scripted(thrice)
    async with WebSocketService(server.config(metrics=True)) as service:
        answers: list[Any] = []
        service.on_response(answers.append)
        for i in range(10):
            await service.ask(f"q{i}")
        await wait_for(lambda: service.metrics.value.frames_in == 30)
        m = service.metrics.value
    assert len(answers) == 10  # each answer delivered once
    assert (m.asks_answered, m.duplicates_dropped, m.frames_in) == (10, 20, 30)
    assert m.ask_latency.samples == 10


async def test_timeouts_cancels_errors_and_disconnects_are_each_counted(scripted: Any) -> None:
    """A server that answers ``fail`` with an error and never answers the rest."""
    server = await scripted(fail_only_fail)
    service = WebSocketService(server.config(metrics=True, request_timeout=60.0))
    try:
        await service.connect()
        with pytest.raises(ServerError):
            await service.ask("fail")
        with pytest.raises(RequestTimeout):
            await service.ask("silence", timeout=0.05)
        cancelled = asyncio.create_task(service.ask("cancel me"))
        await wait_for(lambda: len(server.received) == 3)
        cancelled.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cancelled
        waiting = asyncio.create_task(service.ask("cut off"))
        await wait_for(lambda: len(server.received) == 4)
        service.send_query("fire and forget")  # kept for the next connect()
        await wait_for(lambda: len(server.received) == 5)
        service.disconnect()
        with pytest.raises(ConnectionClosed):
            await waiting
        m = service.metrics.value
        assert m.asks == 5
        assert (m.asks_failed, m.asks_timed_out, m.asks_cancelled) == (2, 1, 1)
        assert (m.asks_answered, m.asks_pending) == (0, 1)  # the fire-and-forget one
        assert m.ask_latency.samples == 1  # the error is an answer; the rest are not
    finally:
        await service.close()


async def test_a_late_answer_after_a_timeout_is_delivered_once_and_its_repeat_counted(
    scripted: Any,
) -> None:
    release = asyncio.Event()

    async def late(ws: web.WebSocketResponse, conn: Scripted) -> None:
        frame = await conn.next_frame(ws)
        assert frame is not None
        await release.wait()
        for _ in range(2):
            await ws.send_str(response_frame(frame["id"], "late"))
        await conn.next_frame(ws)

    server = await scripted(late)
    async with WebSocketService(server.config(metrics=True)) as service:
        with pytest.raises(RequestTimeout):
            await service.ask("slow", timeout=0.05)
        release.set()
        await wait_for(lambda: service.metrics.value.frames_in == 2)
        m = service.metrics.value
    assert (m.asks_timed_out, m.asks_answered, m.duplicates_dropped) == (1, 0, 1)


async def test_reconnects_are_counted_by_cause_through_a_fault_proxy() -> None:
    async with (
        NexusServer() as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        config = server.config(url=proxy.url(), metrics=True, max_reconnect_attempts=None)
        async with WebSocketService(config) as service:

            async def after(cause: str, n: int) -> None:
                await wait_for(lambda: service.metrics.value.reconnects.get(cause, 0) == n)
                await wait_for_state(service, "connected")

            await proxy.cut()
            await after("connection_lost", 1)
            await proxy.close_with(1012, "restart")
            await after("server_closed", 1)
            await proxy.close_with(4429, "retry_after=0.01")
            await after("rate_limited", 1)
            proxy.refuse_upgrade(503)
            await proxy.cut()
            await wait_for(lambda: service.metrics.value.reconnects.get("upgrade_refused", 0) >= 2)
            proxy.refuse_upgrade(None)
            await wait_for_state(service, "connected")
            assert (await service.ask("still there?")).answer
            m = service.metrics.value
    assert m.reconnects["connection_lost"] == 2  # the cut before the refusals, too
    assert m.reconnects["server_closed"] == 1 and m.reconnects["rate_limited"] == 1
    assert m.connects == 5 and m.reconnects_total == 4 + m.reconnects["upgrade_refused"]
    assert m.asks_answered == 1


async def test_a_stalled_link_counts_a_heartbeat_timeout_and_pings_are_timed() -> None:
    async with (
        NexusServer() as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        config = server.config(url=proxy.url(), metrics=True, heartbeat=0.6)
        async with WebSocketService(config) as service:
            await wait_for(lambda: service.metrics.value.ping_rtt.samples >= 1)
            proxy.stall()
            await wait_for(lambda: service.metrics.value.reconnects.get("heartbeat_timeout"))
            proxy.stall(False)
            await wait_for_state(service, "connected")
            rtt = service.metrics.value.ping_rtt
    assert rtt.p50 is not None and rtt.p50 > 0


async def test_a_server_ping_is_answered_while_we_time_our_own(start_nexus: Any) -> None:
    """With metrics on, the client answers the server's pings itself (autoping off):
    a server with a heartbeat keeps the connection."""
    server = await start_nexus(heartbeat=0.3)
    async with WebSocketService(server.config(metrics=True, heartbeat=0.3)) as service:
        await wait_for(lambda: service.metrics.value.ping_rtt.samples >= 3)
        assert server.stats.connections_total == 1
        assert service.metrics.value.reconnects == {}
