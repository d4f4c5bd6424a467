"""Many stores on one shared connection: an idle store costs memory, never a task or
a timer of its own, and each answer goes to the store that asked (routed by its id),
whatever a server or a subscriber does. Counted, not timed (the bench's ``stores``
section measures memory per store, fan-out and create/close times)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import NexusError, RequestTimeout, UsageError, use_websocket
from nexus_reactive.fanout import Router
from nexus_reactive.intake import Intake
from nexus_reactive.messages import (
    AskResponse,
    ErrorMessage,
    ErrorPayload,
    Message,
    ResponseChunkMessage,
    ResponseChunkPayload,
    ResponseMessage,
    UnknownMessage,
)
from nexus_reactive.streams import Publisher

from .conftest import Nexus, Scripted
from .waiting import wait_for


def _scheduled(loop: asyncio.AbstractEventLoop) -> int:
    """Timers the loop holds, not counting cancelled ones (asyncio and uvloop)."""
    timers = getattr(loop, "_scheduled", None)
    if timers is not None:
        return sum(1 for handle in timers if not handle.cancelled())
    # uvloop keeps its timers in libuv; it has no public count. Ready callbacks and
    # tasks are then all this test can see.
    return 0


async def _settled(loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    for _ in range(5):
        await asyncio.sleep(0)
    return len(asyncio.all_tasks(loop)), _scheduled(loop)


async def test_idle_shared_stores_hold_no_task_or_timer_of_their_own(nexus: Nexus) -> None:
    loop = asyncio.get_running_loop()
    config = nexus.config()
    first = use_websocket(config, share=True)
    stores: list[Any] = []
    try:
        await wait_for(lambda: first.state.value.connected)
        tasks_before, timers_before = await _settled(loop)

        stores = [use_websocket(config, share=True) for _ in range(100)]
        assert all(store.service is first.service for store in stores)
        # Each store starts one connect task; on a shared, connected service it ends at once.
        await wait_for(lambda: all(s._connecting is None or s._connecting.done() for s in stores))
        tasks_after, timers_after = await _settled(loop)

        assert tasks_after == tasks_before, (
            f"100 idle shared stores added {tasks_after - tasks_before} task(s): "
            f"{[t.get_name() for t in asyncio.all_tasks(loop)]}"
        )
        assert timers_after == timers_before, (
            f"100 idle shared stores added {timers_after - timers_before} timer(s)"
        )
        assert nexus.stats.connections_total == 1  # one socket for all 101
    finally:
        await asyncio.gather(*(store.close() for store in stores))
        await first.close()
    assert first.service.closed


# == answers go to the store that asked: routed by id, not offered to every store ============


def _frame(kind: str, message_id: str, payload: dict[str, Any]) -> str:
    return json.dumps({"type": kind, "id": message_id, "payload": payload})


def _answer(ask_id: str) -> str:
    return _frame("response", ask_id, {"answer": f"to {ask_id}"})


def _router(store: Any) -> Router:
    router: Router = store._intake._router
    return router


def _ids(store: Any) -> list[str]:
    return [m.id for m in store.messages.value]


async def test_a_store_closed_while_its_ask_is_in_flight_gets_nothing_and_leaks_nothing(
    scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    release = asyncio.Event()

    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            if frame["type"] != "ask":
                continue
            if frame["payload"]["query"] == "held":
                await release.wait()  # answered only after the asking store closed
            for _ in range(2):  # and repeated
                await ws.send_str(_frame("response_chunk", frame["id"], {"delta": "a", "index": 0}))
                await ws.send_str(_answer(frame["id"]))

    server = await scripted(script)
    config = server.config()
    async with use_websocket(config, share=True) as other:
        await wait_for(lambda: other.state.value.connected)
        leaving = use_websocket(config, share=True)
        router = _router(leaving)
        held = leaving.send_message("held")
        await wait_for(lambda: any(f["id"] == held for f in server.received))
        assert router.claimed == 1
        await leaving.close()
        assert router.claimed == 0  # its ask's entry went with it
        release.set()
        await wait_for(lambda: other.service.pending_count == 0)  # the answer came and went
        mine = other.send_message("after")  # answered after the late one: the late one is in
        await wait_for(lambda: _ids(other) == [mine])
        assert len(leaving.messages.value) == 0
        assert router.claimed == 0
        assert len(router) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_late_answer_after_a_timeout_goes_to_the_store_that_asked_only(
    scripted: Any,
) -> None:
    release = asyncio.Event()

    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            if frame["type"] == "ask":
                await release.wait()  # past the ask's timeout
                await ws.send_str(_answer(frame["id"]))
                await ws.send_str(_answer(frame["id"]))  # and once more

    server = await scripted(script)
    config = server.config(request_timeout=0.3)
    async with use_websocket(config, share=True) as a, use_websocket(config, share=True) as b:
        a_errors: list[NexusError] = []
        b_errors: list[NexusError] = []
        a.errors.subscribe(a_errors.append)
        b.errors.subscribe(b_errors.append)
        await wait_for(lambda: a.state.value.connected)
        late = a.send_message("slow")
        await wait_for(lambda: any(isinstance(e, RequestTimeout) for e in a_errors))
        assert [getattr(e, "message_id", None) for e in a_errors] == [late]
        release.set()
        await wait_for(lambda: _ids(a) == [late])  # the late answer, once
        mine = b.send_message("after")
        await wait_for(lambda: _ids(b) == [mine])  # answered after a's: a's went to a alone
        assert _ids(a) == [late]
        assert not b_errors
        assert _router(a).claimed == 0


async def test_two_stores_asking_at_once_each_get_exactly_their_answers_reordered_and_repeated(
    scripted: Any,
) -> None:
    asks_each = 6

    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        ids: list[str] = []
        while len(ids) < 2 * asks_each and (frame := await conn.next_frame(ws)) is not None:
            if frame["type"] == "ask":
                ids.append(frame["id"])
        # Every answer in reverse order, twice; odd ones streamed, pieces out of order.
        for n, ask_id in enumerate(reversed(ids)):
            if n % 2:
                for index in (1, 0, 1):
                    delta = "x" if index == 0 else "y"
                    await ws.send_str(
                        _frame("response_chunk", ask_id, {"delta": delta, "index": index})
                    )
            await ws.send_str(_answer(ask_id))
        for ask_id in ids:
            await ws.send_str(_answer(ask_id))
        await ws.send_str(_frame("notice", "broadcast", {}))  # everyone's
        await ws.send_str(_frame("error", "", {"code": "busy", "message": "whole connection"}))
        while await conn.next_frame(ws) is not None:
            pass

    server = await scripted(script)
    config = server.config()
    async with use_websocket(config, share=True) as a, use_websocket(config, share=True) as b:
        await wait_for(lambda: a.state.value.connected)
        a_ids: list[str] = []
        b_ids: list[str] = []
        for _ in range(asks_each):  # interleaved: both stores' asks go out together
            a_ids.append(a.send_message("from a"))
            b_ids.append(b.send_message("from b"))
        for store, own in ((a, a_ids), (b, b_ids)):
            await wait_for(lambda s=store, o=own: set(_ids(s)) == {*o, "broadcast", ""})
        for store, own in ((a, a_ids), (b, b_ids)):
            history = list(store.messages.value)
            answers = [m for m in history if m.id in own]
            assert sorted(m.id for m in answers) == sorted(own)  # each once, none of the other's
            assert all(type(m) is ResponseMessage for m in answers)  # no piece left partial
            assert [m.id for m in history if m.id not in own] == ["broadcast", ""]
        assert _router(a).claimed == 0


async def test_stores_created_and_closed_from_subscribers_keep_routing_right(
    scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            if frame["type"] == "ask":
                await ws.send_str(_answer(frame["id"]))
                await ws.send_str(_frame("notice", f"n-{frame['id']}", {}))

    server = await scripted(script)
    config = server.config()
    first = use_websocket(config, share=True)
    doomed = use_websocket(config, share=True)
    made: list[Any] = []
    closing: list[asyncio.Task[None]] = []
    try:
        await wait_for(lambda: first.state.value.connected)
        doomed_id = doomed.send_message("doomed")
        await wait_for(lambda: doomed_id in _ids(doomed))

        def on_history(history: Any) -> None:
            # From the store's subscriber: a new store, and another one closed.
            if len(history) and not made:
                made.append(use_websocket(config, share=True))
                closing.append(asyncio.ensure_future(doomed.close()))

        def on_pushed(message: Any) -> None:
            # From a subscriber of the shared service, in the middle of delivery.
            if message.type == "notice" and len(made) == 1:
                made.append(use_websocket(config, share=True))

        first.messages.subscribe(on_history)
        first.service.messages.subscribe(on_pushed)
        first_id = first.send_message("first")
        await wait_for(lambda: len(made) == 2 and all(t.done() for t in closing))
        newcomer, late = made
        assert newcomer.service is first.service is late.service
        new_id = newcomer.send_message("newcomer")
        late_id = late.send_message("late")
        await wait_for(lambda: new_id in _ids(newcomer) and late_id in _ids(late))
        await wait_for(lambda: f"n-{late_id}" in _ids(first))
        assert [i for i in _ids(first) if not i.startswith("n-")] == [first_id]
        assert [i for i in _ids(newcomer) if not i.startswith("n-")] == [new_id]
        assert [i for i in _ids(late) if not i.startswith("n-")] == [late_id]
        # Closed before the newcomers asked: nothing of theirs, not even the broadcasts.
        assert not [i for i in _ids(doomed) if new_id in i or late_id in i]
        assert _ids(doomed)[0] == doomed_id
        assert len(_router(first)) == 3 and _router(first).claimed == 0
    finally:
        await asyncio.gather(*(s.close() for s in (first, doomed, *made)))
    assert first.service.closed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# == the router alone (no socket) =============================================================


def test_the_router_calls_only_the_store_that_asked_and_every_store_for_a_broadcast() -> None:
    publisher: Publisher[Message] = Publisher("messages")
    router = Router(publisher.stream)
    calls: dict[str, list[str]] = {name: [] for name in ("a", "b", "c")}

    def sink(name: str) -> Any:
        return lambda message: calls[name].append(message.id)

    sinks = {name: sink(name) for name in calls}
    for each in sinks.values():
        router.join(each)
    router.claim("q1", sinks["a"])
    publisher.emit(ResponseChunkMessage(id="q1", payload=ResponseChunkPayload("x", 0)))
    publisher.emit(ResponseMessage(id="q1", payload=AskResponse("x")))
    publisher.emit(ResponseMessage(id="q1", payload=AskResponse("x")))  # entry gone: nobody's
    publisher.emit(ResponseMessage(id="q9", payload=AskResponse("?")))  # nobody asked
    publisher.emit(UnknownMessage(type="notice", id="n1", payload={}))
    publisher.emit(ErrorMessage(id="", payload=ErrorPayload("busy", "all")))
    assert calls == {"a": ["q1", "q1", "n1", ""], "b": ["n1", ""], "c": ["n1", ""]}
    assert router.claimed == 0

    # Released (forgotten by its store) or left: the store's answers go nowhere.
    router.claim("q2", sinks["b"])
    router.claim("q3", sinks["c"])
    router.release("q2", sinks["a"])  # not a's: kept
    router.release("q2", sinks["b"])
    router.leave(sinks["c"], ["q3", "not-c's"])
    publisher.emit(ResponseMessage(id="q2", payload=AskResponse("x")))
    publisher.emit(ResponseMessage(id="q3", payload=AskResponse("x")))
    publisher.emit(UnknownMessage(type="notice", id="n2", payload={}))
    assert calls["b"][-1] == "n2" and "q2" not in calls["b"]
    assert calls["c"] == ["n1", ""]  # left before n2
    assert router.claimed == 0 and len(router) == 2
    router.close()
    publisher.emit(UnknownMessage(type="notice", id="n3", payload={}))
    assert calls["a"][-1] == "n2"


def test_a_store_that_raises_or_joins_and_leaves_during_a_broadcast_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher: Publisher[Message] = Publisher("messages")
    router = Router(publisher.stream)
    seen: list[tuple[str, str]] = []

    def broken(message: Message) -> None:
        raise RuntimeError("a broken store")

    def late(message: Message) -> None:
        seen.append(("late", message.id))

    def joiner(message: Message) -> None:
        seen.append(("joiner", message.id))
        if message.id == "n1":
            router.join(late)  # from the next message on
            router.leave(quitter, [])  # still told of this one (its snapshot), not the next

    def quitter(message: Message) -> None:
        seen.append(("quitter", message.id))

    for each in (broken, joiner, quitter):
        router.join(each)
    router.claim("q1", broken)
    publisher.emit(ResponseMessage(id="q1", payload=AskResponse("x")))
    publisher.emit(UnknownMessage(type="notice", id="n1", payload={}))
    publisher.emit(UnknownMessage(type="notice", id="n2", payload={}))
    assert seen == [("joiner", "n1"), ("quitter", "n1"), ("joiner", "n2"), ("late", "n2")]
    assert publisher.stream.observer_count == 1  # the router was never unsubscribed
    failures = [r for r in caplog.records if "failed to take a message" in r.getMessage()]
    assert len(failures) == 3  # q1, n1, n2


def test_a_store_forgets_its_oldest_asks_and_the_router_with_it() -> None:
    loop = asyncio.new_event_loop()
    try:
        publisher: Publisher[Message] = Publisher("messages")
        router = Router(publisher.stream)
        intake = Intake(loop, 10, None, scoped=True, router=router)
        for n in range(10_005):
            intake.remember(f"q{n}")
        assert router.claimed == 10_000  # bounded as the store's own memory of its asks
        assert not intake.owns("q4") and intake.owns("q5")
        publisher.emit(ResponseMessage(id="q4", payload=AskResponse("forgotten")))
        publisher.emit(ResponseMessage(id="q5", payload=AskResponse("kept")))
        assert [m.id for m in intake.snapshot()] == ["q5"]
        intake.stop()
        assert router.claimed == 0 and len(router) == 0
    finally:
        loop.close()


async def test_a_closed_shared_store_sends_nothing_from_any_thread(nexus: Nexus) -> None:
    """The connection outlives a closed store (another store shares it): a
    send_message on the closed store must not ask the server, nor leave a route."""
    config = nexus.config()
    async with use_websocket(config, share=True) as other:
        await wait_for(lambda: other.state.value.connected)
        leaving = use_websocket(config, share=True)
        router = _router(leaving)
        # From another thread: queued to the loop, which runs it only after close()
        # began (the loop is held while the thread runs).
        thread = threading.Thread(target=leaving.send_message, args=("from a thread",))
        thread.start()
        thread.join()
        await leaving.close()
        with pytest.raises(UsageError, match=r"send_message\(\): this store is closed"):
            leaving.send_message("after close")
        assert other.service.pending_count == 0
        assert router.claimed == 0
        assert len(router) == 1
