"""Soak: many reconnect cycles under a steady stream of asks, over real sockets.

A fault proxy between the client and the reference server is cut at seeded random
points (after a random number of answers, while reconnecting, mid-frame, during a
short outage, under latency) while a producer keeps a window of asks in flight.
At the end every ask was answered exactly once, the server's counters agree,
and neither memory nor the number of tasks grew.

The short version runs by default (a few seconds); ``NEXUS_SOAK=long`` (``make
soak``) runs twenty times the cycles.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from nexus_reactive import ResponseMessage, WebSocketService

from .conftest import Nexus, library_tasks
from .faults import FaultProxy, wait_for

LONG = os.environ.get("NEXUS_SOAK") == "long"
CYCLES = 400 if LONG else 20
WARMUP_CYCLES = 20 if LONG else 5
WINDOW = 16  # asks in flight at once
SEED = int(os.environ.get("NEXUS_SOAK_SEED", "20240611"))
ECHO = "You asked: "
MAX_ASKS = 200_000  # room in the delivery tally; far above what the long run asks
# Both sides' memories of ids are bounded: the client's answered and abandoned ids
# (dedupe_size) and the server's reply cache (dedupe_size). Small here, so that the
# warm-up fills them; after it, live memory must stay flat. (With the default 10,000
# the short run never fills them, and a dict's table doubles in steps that no
# per-ask allowance follows.)
REMEMBER = 256
# Memory is compared between the ends of two equal measured phases: what the first
# phase left live (the memories' current contents, the current link's objects) is
# replaced, not added to, by the second. A leak of one future, timer or frame per ask
# (a phase makes about a thousand) or of one task, session or socket per cycle
# shows as more than this.
DRIFT_BYTES = 48 * 1024


@dataclass
class Load:
    """A producer keeping ``WINDOW`` asks in flight until stopped.

    ``delivered[n]`` counts the responses the application saw for ask number ``n``
    (each ask has its own id and query): preallocated, so that counting allocates
    nothing that the memory check would mistake for a leak.
    """

    service: WebSocketService
    delivered: bytearray = field(default_factory=lambda: bytearray(MAX_ASKS))
    answered: int = 0
    issued: int = 0
    failures: list[BaseException] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def on_response(self, message: ResponseMessage) -> None:
        self.delivered[int(message.payload.answer.rpartition(" ")[2])] += 1

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _one(self, n: int) -> None:
        query = f"soak {n}"
        try:
            answer = await self.service.ask(query)
        except Exception as exc:  # collected, so that the test reports it
            self.failures.append(exc)
            return
        if answer.answer != f"{ECHO}{query}":
            self.failures.append(AssertionError(f"{query!r} got {answer.answer!r}"))
        self.answered += 1

    async def _run(self) -> None:
        window = asyncio.Semaphore(WINDOW)
        async with asyncio.TaskGroup() as group:
            while not self._stop.is_set():
                await window.acquire()
                if self._stop.is_set():
                    break
                task = group.create_task(self._one(self.issued))
                task.add_done_callback(lambda _: window.release())
                self.issued += 1


async def progress(load: Load, more: int) -> None:
    """Wait until ``more`` further asks were answered (the client is making headway)."""
    target = load.answered + more
    await wait_for(lambda: load.answered >= target or load.failures)
    assert not load.failures, load.failures[:3]


async def fault_cycle(rng: random.Random, proxy: FaultProxy, load: Load) -> None:
    """One injected fault at a seeded random point, then wait for recovery."""
    await progress(load, rng.randint(1, 25))
    fault = rng.choice(["cut", "double cut", "mid-frame", "outage", "latency"])
    if fault == "cut":
        await proxy.cut()
    elif fault == "double cut":
        await proxy.cut()
        # The second cut lands somewhere in the reconnect: waiting, upgrading or
        # just connected. A short random pause picks the point, not a wait.
        await asyncio.sleep(rng.uniform(0, 0.03))
        await proxy.cut()
    elif fault == "mid-frame":
        before = proxy.connections
        proxy.drop_after(rng.randint(1, 300))
        await wait_for(lambda: proxy.connections > before)
    elif fault == "outage":
        await proxy.stop_listening()
        await proxy.cut()
        await asyncio.sleep(rng.uniform(0, 0.05))
        await proxy.resume_listening()
    else:
        proxy.latency = rng.uniform(0.001, 0.02)
        await proxy.cut()
    await progress(load, 1)  # recovered: answers flow again
    proxy.latency = 0.0


async def quiesce(nexus: Nexus, proxy: FaultProxy, service: WebSocketService) -> None:
    """Wait for a steady point: one WebSocket end to end, nothing in flight.

    The proxy's own count is not asked to be 1: a cut that lands during an upgrade
    leaves a half-closed TCP pipe that the server's HTTP layer keeps until its
    keep-alive timeout, which says nothing about the client.
    """
    await wait_for(lambda: service.state.value.connected)
    await wait_for(lambda: service.pending_count == 0 and service.outbox_size == 0)
    await wait_for(lambda: nexus.stats.connections_open == 1)
    assert proxy.open_connections >= 1


def live_tasks(proxy: FaultProxy) -> int:
    """The test's and the client's live tasks; the proxy's pipes are not the subject."""
    live = [t for t in asyncio.all_tasks() if not t.done()]
    return len(
        [
            t
            for t in live
            if not getattr(t.get_coro(), "__qualname__", "").startswith(type(proxy).__name__ + ".")
        ]
    )


@pytest.mark.soak
async def test_soak_reconnect_cycles_under_steady_asks(start_nexus: Callable[..., Any]) -> None:
    rng = random.Random(SEED)
    # A small reply cache keeps the server's memory flat too; a re-sent ask whose
    # reply was evicted is simply computed again.
    nexus: Nexus = await start_nexus(dedupe_size=REMEMBER)
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        service = WebSocketService(
            nexus.config(
                url=proxy.url(),
                max_reconnect_attempts=None,
                request_timeout=60.0,
                dedupe_size=REMEMBER,
            )
        )
        load = Load(service)
        service.on_response(load.on_response)
        await service.connect()

        # Warm up: caches, pools and lazily built objects reach their steady size.
        load.start()
        for _ in range(WARMUP_CYCLES):
            await fault_cycle(rng, proxy, load)
        await progress(load, 3 * REMEMBER)  # the id memories are full
        await load.stop()
        await quiesce(nexus, proxy, service)
        gc.collect()
        tasks_before = live_tasks(proxy)
        answered_before = load.answered

        async def measured_phase() -> int:
            load.start()
            for _ in range(CYCLES):
                await fault_cycle(rng, proxy, load)
            await load.stop()
            await quiesce(nexus, proxy, service)
            gc.collect()
            return tracemalloc.get_traced_memory()[0]

        # Measured with asyncio's debug mode off. In it (PYTHONASYNCIODEBUG=1) every task and
        # timer handle carries the stack it was made from, and pytest's log capture keeps
        # each slow-callback warning (tracemalloc slows callbacks past the threshold): the
        # debugging's memory, not the library's, and it swings with how many bounded objects
        # (cancelled timers in the loop's heap, done tasks in the reply cache) are live.
        loop = asyncio.get_running_loop()
        debug = loop.get_debug()
        loop.set_debug(False)
        tracemalloc.start()
        try:
            first = await measured_phase()
            second = await measured_phase()
        finally:
            tracemalloc.stop()
            loop.set_debug(debug)
        tasks_after = live_tasks(proxy)
        measured = load.answered - answered_before

        assert not load.failures, load.failures[:3]
        assert load.answered == load.issued
        # Every ask answered exactly once, as the application sees it.
        assert load.issued < MAX_ASKS
        assert load.delivered.count(1) == load.issued
        assert load.delivered.count(0) == MAX_ASKS - load.issued
        # The server agrees: each id was received and computed at least once, and
        # no received ask was both computed and replayed.
        stats = nexus.stats
        assert stats.asks_received >= load.issued
        assert stats.engine_calls >= load.issued
        assert stats.engine_calls + stats.asks_replayed <= stats.asks_received
        assert proxy.connections >= 2 * CYCLES  # the faults really did cut connections
        # Flat: nothing accumulates per cycle or per ask.
        assert tasks_after <= tasks_before
        assert second - first < DRIFT_BYTES, (
            f"{second - first} bytes more live after a second {CYCLES} cycles "
            f"({first} after the first, {second} after the second; {measured} asks "
            f"in both; allowed {DRIFT_BYTES})"
        )

        await service.close()
    assert library_tasks() == []
    await wait_for(lambda: nexus.stats.connections_open == 0)
