"""A store closed from another thread than its loop's, over real loopback sockets: while
that loop runs (the documented path), while it is stopped, and once it is closed.

Thread A makes the store on an event loop of its own; thread B, which runs another loop
(``asyncio.run``) or none, calls the store. A call that cannot be honoured must say so
at once in the API's words (``UsageError``), never hang and never be dropped silently;
one that can must leave no task or thread behind.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from nexus_reactive import UsageError, WebSocketStore, use_websocket
from nexus_reactive.testing import wait_for_state

from .conftest import Nexus
from .waiting import EVENTUALLY, wait_for

T = TypeVar("T")


async def in_thread(name: str, call: Callable[[], T]) -> T:
    """Run ``call`` in a new thread named ``name``; its result, or its exception.

    A call that hangs fails the test after :data:`EVENTUALLY` (the calls made here bound
    their own waits by it too, so that no thread is left behind)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    await wait_for(lambda: not thread.is_alive(), 2 * EVENTUALLY, message=f"{name} returned")
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def close_from_b(store: WebSocketStore) -> None:
    """Thread B's close: on a loop of its own, bounded so that a hang ends as TimeoutError."""
    asyncio.run(asyncio.wait_for(store.close(), EVENTUALLY))


async def ask_and_wait(store: WebSocketStore, query: str) -> None:
    """On the store's loop: connected, ``query`` sent and its answer in the history."""
    await wait_for_state(store, "connected")
    count = len(store.messages.value)
    ask_id = store.send_message(query)
    await wait_for(lambda: len(store.messages.value) > count)
    assert store.messages.value[-1].id == ask_id


def used_store(nexus: Nexus) -> Callable[[], Any]:
    async def make() -> WebSocketStore:
        store = use_websocket(nexus.config())
        await ask_and_wait(store, "from thread A")
        return store

    return make


def shut(loop: asyncio.AbstractEventLoop) -> None:
    """Close a stopped loop as asyncio.run does (its executor's threads joined)."""
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def pending(loop: asyncio.AbstractEventLoop) -> list[str]:
    """The tasks of a loop that does not run (read from any thread)."""
    return sorted(t.get_name() for t in asyncio.all_tasks(loop))


def threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


# == (b) the loop runs in thread A: the documented path ======================================


async def test_close_from_thread_b_while_thread_a_runs_the_loop_closes_everything(
    nexus: Nexus,
) -> None:
    before = threads()
    loop = asyncio.new_event_loop()
    loop.set_debug(True)

    def thread_a() -> None:
        loop.run_forever()
        shut(loop)

    runner = threading.Thread(target=thread_a, name="thread-A")
    runner.start()
    try:
        made = asyncio.run_coroutine_threadsafe(used_store(nexus)(), loop)
        store: WebSocketStore = await asyncio.wrap_future(made)
        completed: list[str] = []
        store.messages.subscribe(on_completed=lambda: completed.append("messages"))
        store.state.subscribe(on_completed=lambda: completed.append("state"))

        await in_thread("thread-B", lambda: close_from_b(store))

        assert store.service.closed
        assert sorted(completed) == ["messages", "state"]
        assert [m.payload.answer for m in store.messages.value] == ["You asked: from thread A"]
        await wait_for(lambda: nexus.stats.connections_open == 0)
        with pytest.raises(UsageError, match=r"send_message\(\): this store is closed"):
            await in_thread("thread-B", lambda: store.send_message("after close"))
        await in_thread("thread-B", lambda: close_from_b(store))  # idempotent

        async def left() -> list[str]:
            return [t.get_name() for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        assert await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(left(), loop)) == []
    finally:
        loop.call_soon_threadsafe(loop.stop)
        await wait_for(lambda: not runner.is_alive(), message="thread A ended")
    assert loop.is_closed()
    await wait_for(lambda: threads() <= before, message="no thread left")


# == (a) the loop is stopped, not closed =====================================================


async def stopped_loop_with_a_store(nexus: Nexus) -> tuple[asyncio.AbstractEventLoop, Any]:
    """Thread A made and used a store, then its loop stopped (run_until_complete returned)."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    store = await in_thread("thread-A", lambda: loop.run_until_complete(used_store(nexus)()))
    assert not loop.is_running() and not loop.is_closed()
    return loop, store


async def test_close_from_thread_b_while_the_loop_is_stopped_says_so_at_once(
    nexus: Nexus,
) -> None:
    before = threads()
    loop, store = await stopped_loop_with_a_store(nexus)
    try:
        # Before: it waited for the loop for ever (here: TimeoutError after EVENTUALLY).
        with pytest.raises(UsageError, match=r"close\(\).*event loop is not running") as info:
            await in_thread("thread-B", lambda: close_from_b(store))
        assert "run_until_complete(store.close())" in str(info.value)  # what to do
        assert not store.service.closed  # nothing was done...

        async def still_works() -> None:
            await ask_and_wait(store, "after the refused close")

        # ...so the store still works when its loop runs again, and closes there.
        await in_thread("thread-A", lambda: loop.run_until_complete(still_works()))
        await in_thread("thread-A", lambda: loop.run_until_complete(store.close()))
        assert store.service.closed
        assert pending(loop) == []
        # A closed store's close(): nothing to wait for, even with its loop stopped.
        await in_thread("thread-B", lambda: close_from_b(store))
    finally:
        if not store.service.closed:
            await in_thread("thread-A", lambda: loop.run_until_complete(store.close()))
        await in_thread("thread-A", lambda: shut(loop))
    await wait_for(lambda: threads() <= before, message="no thread left")


async def test_commands_from_thread_b_while_the_loop_is_stopped_are_refused_not_lost(
    nexus: Nexus,
) -> None:
    """send_message, clear_messages and reconnect from another thread hand their work to
    the store's loop; with that loop stopped, it would wait there unseen (and be dropped
    with the loop): refused, in the API's words, with nothing done."""
    loop, store = await stopped_loop_with_a_store(nexus)
    try:
        asked = nexus.stats.asks_received
        commands: dict[str, Callable[[], object]] = {
            "send_message": lambda: store.send_message("while stopped"),
            "clear_messages": store.clear_messages,
            "reconnect": store.reconnect,
        }
        for name, command in commands.items():
            with pytest.raises(UsageError, match=rf"{name}\(\).*event loop is not running"):
                await in_thread("thread-B", command)

        async def settled() -> None:  # on the connection, after anything queued before
            await ask_and_wait(store, "after the refused commands")

        await in_thread("thread-A", lambda: loop.run_until_complete(settled()))
        assert nexus.stats.asks_received == asked + 1  # "while stopped" was never sent
        answers = [m.payload.answer for m in store.messages.value]
        assert answers == ["You asked: from thread A", "You asked: after the refused commands"]
        assert nexus.stats.connections_total == 1  # no reconnect either
    finally:
        await in_thread("thread-A", lambda: loop.run_until_complete(store.close()))
        await in_thread("thread-A", lambda: shut(loop))


# == (c) the loop is closed ==================================================================


@pytest.mark.filterwarnings("error::RuntimeWarning")  # "coroutine ... was never awaited"
async def test_close_after_the_loop_closed_says_so_in_the_apis_words(nexus: Nexus) -> None:
    """asyncio.run(main()) returned without closing the store (its tasks were cancelled,
    the loop closed); a clean-up then calls close() from another thread."""
    store = await in_thread("thread-A", lambda: asyncio.run(used_store(nexus)(), debug=True))
    await wait_for(lambda: nexus.stats.connections_open == 0)
    # Before: RuntimeError("Event loop is closed"), and a coroutine never awaited.
    with pytest.raises(UsageError, match=r"close\(\).*event loop is closed") as info:
        await in_thread("thread-B", lambda: close_from_b(store))
    assert "before" in str(info.value) and "async with use_websocket" in str(info.value)
    for name, command in {
        "send_message": lambda: store.send_message("after the loop"),
        "clear_messages": store.clear_messages,
        "reconnect": store.reconnect,
    }.items():
        with pytest.raises(UsageError, match=rf"{name}\(\).*event loop is closed"):
            await in_thread("thread-B", command)
    assert [m.payload.answer for m in store.messages.value] == ["You asked: from thread A"]


async def test_a_store_closed_before_its_loop_closed_closes_again_quietly(nexus: Nexus) -> None:
    async def use_and_close() -> WebSocketStore:
        async with use_websocket(nexus.config()) as store:
            await ask_and_wait(store, "from thread A")
        return store

    store = await in_thread("thread-A", lambda: asyncio.run(use_and_close(), debug=True))
    await in_thread("thread-B", lambda: close_from_b(store))  # closed already: nothing to do
    with pytest.raises(UsageError, match=r"send_message\(\): this store is closed"):
        await in_thread("thread-B", lambda: store.send_message("after close"))


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_a_loop_closed_while_a_close_from_another_thread_waits_ends_the_wait(
    nexus: Nexus,
) -> None:
    """Thread B's close() is queued on the running loop; before the loop gets to it, the
    loop stops, then closes (the work queued on it is dropped). B must not wait for ever."""
    loop = asyncio.new_event_loop()
    loop.set_debug(True)
    held, release, queued = threading.Event(), threading.Event(), threading.Event()
    left: list[list[str]] = []

    def thread_a() -> None:
        loop.run_forever()
        left.append(pending(loop))
        loop.close()  # with close()'s work still queued

    def hold() -> None:  # thread A is busy in a callback while B queues its close()
        held.set()
        release.wait(EVENTUALLY)
        loop.stop()

    runner = threading.Thread(target=thread_a, name="thread-A")
    runner.start()

    async def make() -> WebSocketStore:  # lazy and unused: no task, no socket to leak
        return use_websocket(nexus.config(lazy=True))

    store = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))
    loop.call_soon_threadsafe(hold)
    await wait_for(held.is_set)

    async def close_in_b() -> None:
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)  # close() ran up to its first wait: its work is queued
        queued.set()
        await asyncio.wait_for(closing, EVENTUALLY)

    closed = asyncio.ensure_future(in_thread("thread-B", lambda: asyncio.run(close_in_b())))
    try:
        await wait_for(queued.is_set)
    finally:
        release.set()
    await wait_for(lambda: not runner.is_alive(), message="thread A ended")
    # The store held no task of its own; close()'s work had not begun (asyncio), or had
    # (uvloop runs what was queued during the callback before it stops): unnamed either way.
    assert [[n for n in names if n.startswith("nexus-reactive")] for names in left] == [[]]
    with pytest.raises(UsageError, match=r"close\(\).*event loop (is|was) closed"):
        await closed
