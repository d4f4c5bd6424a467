"""Issue 12: callers and subscribers that misbehave, over real loopback sockets.

Re-entrant subscribers (defect 3) and a slow UI thread under a flood (defect 4); stores
that must not see each other's answers (defect 6): test_hostile_stores.py.
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
    NexusError,
    OutboxFull,
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
    # A count, not a duration: how many answers a few seconds hold depends on how
    # busy the machine is, and the test needs far more than the history keeps.
    count = 4_000

    async def flood(ws: web.WebSocketResponse, _conn: Scripted) -> None:
        for i in range(count):
            await ws.send_str(
                json.dumps({"type": "response", "id": f"m{i}", "payload": {"answer": answer}})
            )
            if i % 50 == 49:
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


# == more re-entrant callers =================================================================


async def test_a_subscriber_that_asks_again_on_each_answer_keeps_everyone_in_step(
    nexus: Nexus,
) -> None:
    async with use_websocket(nexus.config()) as store:
        others: list[History[HistoryItem]] = []

        def ask_again(history: History[HistoryItem]) -> None:
            if 0 < len(history) < 5 and history[-1].id in asked:
                asked.add(store.send_message(f"again {len(history)}"))

        store.messages.subscribe(ask_again)
        store.messages.subscribe(others.append)
        await wait_for(lambda: store.state.value.connected, DEADLINE)
        asked = {store.send_message("start")}
        await wait_for(lambda: len(store.messages.value) == 5, DEADLINE)
        await wait_for(lambda: len(others[-1]) == 5, DEADLINE)
        assert others[-1] == store.messages.value
        assert [len(h) for h in others] == sorted(len(h) for h in others)


async def test_close_from_a_messages_subscriber_completes_everyone_after_the_value(
    nexus: Nexus,
) -> None:
    store = use_websocket(nexus.config())
    closing: list[asyncio.Task[None]] = []
    later: list[History[HistoryItem]] = []
    completed: list[bool] = []

    def close_on_answer(history: History[HistoryItem]) -> None:
        if len(history) and not closing:
            closing.append(asyncio.get_running_loop().create_task(store.close()))

    store.messages.subscribe(close_on_answer)
    store.messages.subscribe(later.append, on_completed=lambda: completed.append(True))
    await wait_for(lambda: store.state.value.connected, DEADLINE)
    store.send_message("bye")
    await wait_for(lambda: bool(closing) and closing[0].done(), DEADLINE)
    await closing[0]
    assert completed == [True]
    assert len(later[-1]) == 1
    assert store.service.closed


async def test_subscribing_from_another_thread_during_a_flood_ends_on_the_value(
    scripted: Any,
) -> None:
    async def flood(ws: web.WebSocketResponse, conn: Scripted) -> None:
        for i in range(3_000):
            await ws.send_str(
                json.dumps({"type": "response", "id": f"m{i}", "payload": {"answer": "x"}})
            )
            if i % 100 == 0:
                await asyncio.sleep(0.001)
        await ws.receive()

    server = await scripted(flood)
    ui = SlowThreadScheduler(delay=0.01)
    try:
        async with use_websocket(server.config(), scheduler=ui, max_messages=500) as store:
            seen: list[History[HistoryItem]] = []

            def subscribe_from_a_thread() -> None:
                store.messages.subscribe(lambda h: seen.__setitem__(slice(None), [h]))

            await asyncio.to_thread(subscribe_from_a_thread)
            await wait_for(
                lambda: len(store.messages.value) == 500 and store.messages.value[-1].id == "m2999",
                DEADLINE,
            )
            await wait_for(lambda: bool(seen) and seen[-1] == store.messages.value, DEADLINE)
            assert ui.max_queued <= 2
    finally:
        ui.stop()


async def test_a_failed_send_from_another_thread_goes_to_that_stores_errors_only() -> None:
    # Nothing listens there: messages wait in an outbox of one.
    from .conftest import client_config

    config = client_config("ws://127.0.0.1:9/", outbox_limit=1, max_reconnect_attempts=None)
    async with use_websocket(config, share=True) as a, use_websocket(config, share=True) as b:
        assert a.service is b.service
        a_errors: list[NexusError] = []
        b_errors: list[NexusError] = []
        a.errors.subscribe(a_errors.append)
        b.errors.subscribe(b_errors.append)
        a.send_message("fills the outbox")
        await asyncio.to_thread(a.send_message, "one too many")
        await wait_for(lambda: any(isinstance(e, OutboxFull) for e in a_errors), DEADLINE)
        assert not any(isinstance(e, OutboxFull) for e in b_errors)
