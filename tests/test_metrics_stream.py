"""``service.metrics`` as a stream: it ticks only while subscribed, survives subscribers
that raise or re-enter, completes on close leaving no timer, starts its timer on the loop
from another thread; a store's metrics, the outbox depth while disconnected, asks a
journal restored. Counted, never timed."""

from __future__ import annotations

import asyncio
import math
import threading
from pathlib import Path

import pytest

from nexus_reactive import Metrics, UsageError, WebSocketService, use_websocket
from nexus_reactive.testing import NexusServer

from .waiting import wait_for

# -- the stream -----------------------------------------------------------------------------


def _timers(loop: asyncio.AbstractEventLoop) -> int:
    timers = getattr(loop, "_scheduled", None)
    return 0 if timers is None else sum(1 for handle in timers if not handle.cancelled())


async def test_the_stream_ticks_only_while_subscribed(nexus: NexusServer) -> None:
    loop = asyncio.get_running_loop()
    config = nexus.config(metrics=True, metrics_interval=0.02, heartbeat=None)
    async with WebSocketService(config) as service:
        for _ in range(3):
            await asyncio.sleep(0)
        idle = _timers(loop)
        peek = service.metrics.subscribe(lambda m: None)
        assert _timers(loop) == (idle + 1 if idle else 0)  # one timer (uvloop: uncounted)
        peek.dispose()
        assert _timers(loop) == idle and service.metrics._timer is None
        seen: list[Metrics] = []
        dispose = service.metrics.subscribe(seen.append)
        assert seen == [service.metrics.value]  # the current value, at once
        await service.ask("one")
        await wait_for(lambda: seen[-1].asks_answered == 1)  # the timer emitted it
        quiet = len(seen)
        # Nothing changes: no emission, however many ticks pass.
        await wait_for(lambda: service.metrics._timer is not None)
        dispose.dispose()
        assert service.metrics._timer is None
        assert len(seen) == quiet
        for _ in range(1000):  # many snapshots, each fresh, nothing kept
            assert service.metrics.value.asks == 1
        assert service.metrics.observer_count == 0 and service.metrics._timer is None


async def test_subscribers_that_raise_or_reenter_do_not_break_the_stream(
    nexus: NexusServer,
) -> None:
    config = nexus.config(metrics=True, metrics_interval=0.02)
    async with WebSocketService(config) as service:
        stream = service.metrics
        calls = {"bad": 0, "reentrant": 0}
        good: list[Metrics] = []
        inner: list[Metrics] = []

        def bad(m: Metrics) -> None:
            calls["bad"] += 1
            if calls["bad"] > 1:
                raise RuntimeError("a subscriber's bug")

        def reentrant(m: Metrics) -> None:
            calls["reentrant"] += 1
            assert stream.value.asks >= m.asks  # reading inside a delivery is fine
            if calls["reentrant"] == 2:  # subscribing from inside a delivery, once
                stream.subscribe(inner.append)

        stream.subscribe(bad)
        stream.subscribe(reentrant)
        stream.subscribe(good.append)
        for i in range(3):
            await service.ask(f"q{i}")
            await wait_for(lambda i=i: good[-1].asks_answered == i + 1)
        assert calls["bad"] == 2  # raised on its second value: unsubscribed
        assert inner and inner[-1] == good[-1]
        assert stream.observer_count == 3


async def test_the_stream_completes_on_close_and_leaves_no_timer(nexus: NexusServer) -> None:
    config = nexus.config(metrics=True, metrics_interval=0.02)
    service = WebSocketService(config)
    done = threading.Event()
    # Subscribed where no loop runs, before the service has one: no timer yet.
    thread = threading.Thread(target=lambda: service.metrics.subscribe(on_completed=done.set))
    thread.start()
    thread.join()
    assert service.metrics._timer is None
    await service.connect()
    await wait_for(lambda: service.metrics._timer is not None)  # armed when it connected
    await service.close()
    assert done.is_set() and service.metrics._timer is None
    assert service.metrics.value.connects == 1  # still readable after close


async def test_a_subscriber_on_another_thread_starts_the_timer_on_the_loop(
    nexus: NexusServer,
) -> None:
    config = nexus.config(metrics=True, metrics_interval=0.02)
    async with WebSocketService(config) as service:
        seen: list[Metrics] = []
        thread = threading.Thread(target=lambda: service.metrics.subscribe(seen.append))
        thread.start()
        thread.join()
        await service.ask("from the loop")
        await wait_for(lambda: seen[-1].asks_answered == 1)


async def test_the_store_shows_its_connections_metrics(nexus: NexusServer) -> None:
    async with use_websocket(nexus.config(metrics=True)) as store:
        store.send_message("hello")
        await wait_for(lambda: len(store.messages.value) == 1)
        assert store.metrics is store.service.metrics
        assert store.metrics.value.asks_answered == 1
    async with use_websocket(nexus.config()) as plain:
        with pytest.raises(UsageError, match="metrics are off"):
            _ = plain.metrics


async def test_an_outbox_filled_while_disconnected_shows_its_depth(nexus: NexusServer) -> None:
    service = WebSocketService(nexus.config(metrics=True))
    try:
        for i in range(5):
            service.send_query(f"queued {i}")
        m = service.metrics.value
        assert (m.outbox_depth, m.asks_pending, m.asks, m.frames_out) == (5, 5, 5, 0)
        await service.connect()
        await wait_for(lambda: service.metrics.value.asks_answered == 5)
        m = service.metrics.value
        assert (m.outbox_depth, m.asks_pending, m.frames_out) == (0, 0, 5)
        assert m.ask_latency.samples == 5 and math.isfinite(m.ask_latency.max or 0)
    finally:
        await service.close()


async def test_asks_a_journal_restored_are_counted_and_answered(
    nexus: NexusServer, tmp_path: Path
) -> None:
    db = tmp_path / "client.db"
    first = WebSocketService(nexus.config(persist=db))
    for i in range(3):
        first.send_query(f"before the restart {i}")
    await first.close()  # never connected: the journal keeps the three
    again = WebSocketService(nexus.config(persist=db, metrics=True))
    try:
        assert (again.metrics.value.asks, again.metrics.value.asks_pending) == (3, 3)
        await again.connect()
        await wait_for(lambda: again.metrics.value.asks_answered == 3)
        m = again.metrics.value
        assert (m.asks, m.asks_pending, m.frames_out) == (3, 0, 3)
        assert m.ask_latency.samples == 0  # made in a previous life: no start to time from
    finally:
        await again.close()
