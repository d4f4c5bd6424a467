"""use_websocket_sync and subscriptions made from other threads, over real sockets."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from nexus_reactive import (
    AskResponse,
    ErrorMessage,
    Phase,
    UsageError,
    WebSocketService,
    use_websocket_sync,
)

from .conftest import Nexus
from .waiting import EVENTUALLY, wait_for


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "nexus-reactive-loop"]


async def test_sync_store_works_and_closes_from_inside_a_running_loop(nexus: Nexus) -> None:
    store = await asyncio.to_thread(use_websocket_sync, nexus.config())
    state = await asyncio.to_thread(store.wait_connected, EVENTUALLY)
    assert state.connected
    answer = await asyncio.to_thread(store.ask, "blocking ask")
    assert answer.answer == "You asked: blocking ask"
    ask_id = store.send_message("from this thread")
    await wait_for(lambda: any(m.id == ask_id for m in store.messages.value))
    # close() here runs on a thread with a running loop (this test's): it must not
    # try to drive a loop of its own on it.
    store.close()
    assert loop_threads() == []
    store.close()  # idempotent


async def test_ask_rx_subscribed_from_another_thread(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        got: list[AskResponse] = []
        done = threading.Event()

        def subscribe_elsewhere() -> None:
            service.ask_rx("from a UI thread").subscribe(got.append, on_completed=done.set)

        await asyncio.to_thread(subscribe_elsewhere)
        await wait_for(done.is_set)
        assert [a.answer for a in got] == ["You asked: from a UI thread"]


async def test_stream_by_class_is_typed_and_filtered(nexus: Nexus) -> None:
    async with WebSocketService(nexus.config()) as service:
        errors: list[ErrorMessage] = []
        by_name: list[Any] = []
        service.stream(ErrorMessage).subscribe(errors.append)
        service.stream("error").subscribe(by_name.append)
        service.send({"type": "mystery", "id": "m1", "payload": {}})
        await service.ask("fine")
        await wait_for(lambda: len(errors) == 1)
        assert errors[0].payload.code == "unknown_type"  # typed: payload has .code
        assert by_name == errors


async def test_sync_store_takes_the_store_options(nexus: Nexus) -> None:
    def make() -> Any:
        return use_websocket_sync(nexus.config(), max_messages=2, batch_interval=0.01)

    store = await asyncio.to_thread(make)
    try:
        await asyncio.to_thread(store.wait_connected, EVENTUALLY)
        ids = [store.send_message(f"q{i}") for i in range(3)]
        await wait_for(lambda: [m.id for m in store.messages.value] == ids[-2:])
        assert store.service.config.max_messages is None  # not a connection setting
    finally:
        await asyncio.to_thread(store.close)


async def test_share_true_is_refused_because_each_sync_store_has_its_own_loop(
    nexus: Nexus,
) -> None:
    import pytest

    from nexus_reactive import ConfigError

    before = threading.active_count()
    with pytest.raises(ConfigError, match="its own event loop") as info:
        use_websocket_sync(nexus.config(), share=True)
    assert "use_websocket(share=True)" in str(info.value)
    assert threading.active_count() == before  # no loop thread started

    def accepted() -> str:
        with use_websocket_sync(nexus.config(), share=False) as store:
            store.wait_connected()
            return store.ask("still accepted").answer

    assert await asyncio.to_thread(accepted) == "You asked: still accepted"


async def test_sync_store_closed_from_its_own_loops_thread_closes(nexus: Nexus) -> None:
    """close() "from any thread" includes the store's loop thread: a subscriber without a
    scheduler runs there. It cannot wait for its own thread; the store closes once the
    subscriber returns (its connection, then the loop), and a close() elsewhere waits."""
    store = await asyncio.to_thread(use_websocket_sync, nexus.config())
    outcome: list[object] = []

    def on_state(state: Any) -> None:
        if state.connected and not outcome and threading.current_thread().name in loop_threads():
            try:
                store.close()
                outcome.append("returned")
            except BaseException as exc:  # recorded: the test says what it was
                outcome.append(exc)

    store.state.subscribe(on_state)
    store.reconnect()  # a fresh connection, its `connected` published on the loop's thread
    await wait_for(lambda: outcome)
    assert outcome == ["returned"]
    await wait_for(lambda: loop_threads() == [])
    assert store.state.value.phase is Phase.CLOSED
    await asyncio.to_thread(store.close)  # idempotent
    with pytest.raises(UsageError):
        store.send_message("after close")
