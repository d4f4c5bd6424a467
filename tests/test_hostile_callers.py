"""Issue 12: callers and subscribers that misbehave, over real loopback sockets.

Re-entrant subscribers (defect 3), a slow UI thread under a flood (defect 4),
and stores that must not see each other's answers (defect 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tracemalloc
from typing import Any

from aiohttp import web

from nexus_reactive import (
    ConnectionClosed,
    ConnectionState,
    Phase,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.store import History, HistoryItem

from .conftest import Nexus, Scripted
from .faults import wait_for
from .schedulers import SlowThreadScheduler

# Generous: the suite runs on a loaded 2-core machine.
DEADLINE = 20.0


# == defect 3: re-entrant emission ===========================================================


async def test_disconnect_from_a_state_subscriber_leaves_every_subscriber_on_the_value(
    nexus: Nexus,
) -> None:
    service = WebSocketService(nexus.config())
    before: list[ConnectionState] = []
    after: list[ConnectionState] = []
    service.state.subscribe(before.append)

    def disconnect_when_connected(state: ConnectionState) -> None:
        if state.connected:
            service.disconnect()

    service.state.subscribe(disconnect_when_connected)
    service.state.subscribe(after.append)
    try:
        with contextlib.suppress(ConnectionClosed):
            await service.connect()
        await wait_for(lambda: service.state.value.phase is Phase.DISCONNECTED, DEADLINE)
        assert any(s.connected for s in after)
        assert after[-1] == service.state.value  # not "connected"
        assert before[-1] == service.state.value
        assert [s.phase for s in before] == [s.phase for s in after]  # same order
    finally:
        await service.close()


async def test_clear_messages_from_a_messages_subscriber_leaves_every_subscriber_empty(
    nexus: Nexus,
) -> None:
    async with use_websocket(nexus.config()) as store:
        later: list[History[HistoryItem]] = []
        cleared = 0

        def clear_when_an_answer_comes(history: History[HistoryItem]) -> None:
            nonlocal cleared
            if len(history):
                cleared += 1
                store.clear_messages()

        store.messages.subscribe(clear_when_an_answer_comes)
        store.messages.subscribe(later.append)
        await wait_for(lambda: store.state.value.connected, DEADLINE)
        store.send_message("first")
        await wait_for(lambda: cleared == 1, DEADLINE)
        store.send_message("second")
        await wait_for(lambda: cleared == 2, DEADLINE)

        assert len(store.messages.value) == 0
        assert later[-1] == store.messages.value  # not the pre-clear history
        assert [len(h) for h in later] == [0, 1, 0, 1, 0]


# == defect 4: a slow UI thread under a flood ================================================


async def test_a_slow_ui_thread_under_a_flood_keeps_memory_bounded(scripted: Any) -> None:
    """The issue's scenario: max_messages=1000, a UI callback taking 50 ms, a server
    flooding 2 kB answers. Before, every snapshot was queued for the UI thread (each
    pinning the messages it saw) and memory grew without bound."""
    answer = "x" * 2_000
    flood_for = 3.0  # seconds

    async def flood(ws: web.WebSocketResponse, _conn: Scripted) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + flood_for
        i = 0
        while loop.time() < end:
            for _ in range(50):
                await ws.send_str(
                    json.dumps({"type": "response", "id": f"m{i}", "payload": {"answer": answer}})
                )
                i += 1
            await asyncio.sleep(0)  # let the client side of this loop read
        await ws.send_str(json.dumps({"type": "response", "id": "done", "payload": {"answer": ""}}))
        await ws.receive()  # stay open until the client leaves

    server = await scripted(flood)
    ui = SlowThreadScheduler(delay=0.05)  # every UI callback takes 50 ms
    tracemalloc.start()
    try:
        async with use_websocket(server.config(), max_messages=1000, scheduler=ui) as store:
            delivered: list[History[HistoryItem]] = []  # the latest only: a UI's label

            def show(history: History[HistoryItem]) -> None:
                delivered[:] = [history]

            store.messages.subscribe(show)
            store.state.subscribe(lambda _s: None)
            views = [store.messages, store.state]
            pending_peak = 0
            base = tracemalloc.get_traced_memory()[0]
            memory_peak = 0

            def done() -> bool:
                nonlocal pending_peak, memory_peak
                pending_peak = max(pending_peak, *(getattr(v, "pending", 99) for v in views))
                memory_peak = max(memory_peak, tracemalloc.get_traced_memory()[0] - base)
                last = delivered[-1] if delivered else ()
                return len(last) > 0 and last[-1].id == "done"

            await wait_for(done, DEADLINE, interval=0.02)
            received = int(store.messages.value[-2].id[1:])
            assert received > 3_000  # a flood: far more than the history holds
            assert pending_peak <= 1  # at most one pending delivery per view
            assert ui.max_queued <= 2  # two views
            # 1000 messages of 2 kB in the history, some slack for the compaction
            # and the socket: a few MB, not one history per pending snapshot.
            assert memory_peak < 16 * 2**20, f"{memory_peak / 2**20:.0f} MiB"
            assert len(store.messages.value) == 1000
            assert delivered[-1] == store.messages.value
    finally:
        tracemalloc.stop()
        ui.stop()


async def test_a_subscriber_that_raises_on_a_ui_thread_is_dropped_and_others_go_on(
    nexus: Nexus,
) -> None:
    ui = SlowThreadScheduler(delay=0.0)
    try:
        async with use_websocket(nexus.config(), scheduler=ui) as store:
            good: list[History[HistoryItem]] = []

            def broken(_history: History[HistoryItem]) -> None:
                raise RuntimeError("UI bug")

            store.messages.subscribe(broken)
            store.messages.subscribe(good.append)
            await wait_for(lambda: store.state.value.connected, DEADLINE)
            store.send_message("hello")
            await wait_for(lambda: bool(good) and len(good[-1]) == 1, DEADLINE)
            assert good[-1] == store.messages.value
    finally:
        ui.stop()
