"""Asks queued with a deadline (``request_timeout``) from a thread that runs no event
loop, before the service has one: queued (and journaled) as any other, timed from the
moment they were queued once the service has its loop, answered or timed out with the
usual error; nothing is left behind by ``close()``, with or without a loop ever."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nexus_reactive import (
    NexusError,
    RequestTimeout,
    ResponseMessage,
    UsageError,
    WebSocketService,
)
from nexus_reactive.persist import Journal

from .conftest import Nexus, ServerFactory, gated_engine, library_tasks
from .waiting import wait_for


def from_threads(call: Callable[[], str], threads: int = 1, each: int = 1) -> list[str]:
    """Run ``call`` ``each`` times on each of ``threads`` threads started together (none
    runs an event loop); return the ids, and re-raise the first failure."""
    barrier = threading.Barrier(threads)
    ids: list[str] = []
    failures: list[BaseException] = []

    def work() -> None:
        barrier.wait()
        for _ in range(each):
            try:
                ids.append(call())
            except BaseException as exc:
                failures.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return ids


def nothing_left(service: WebSocketService) -> bool:
    asks = service._asks
    return asks._timer is None and not asks._held and library_tasks() == []


async def test_an_ask_queued_from_a_thread_without_a_loop_is_answered_after_connect(
    nexus: Nexus,
) -> None:
    service = WebSocketService(nexus.config(request_timeout=30))
    (ask_id,) = from_threads(lambda: service.send_query("queued offline"))
    assert service.outbox_size == 1 and service.pending_count == 1
    answers: list[ResponseMessage] = []
    errors: list[NexusError] = []
    service.responses.subscribe(answers.append)
    service.errors.subscribe(errors.append)

    await service.connect()  # bound now: the ask's deadline is timed on this loop
    await wait_for(lambda: answers)
    assert [a.id for a in answers] == [ask_id]
    assert answers[0].payload.answer.endswith("queued offline")
    await wait_for(lambda: service.pending_count == 0)
    assert service._asks._deadlines.next_due() is None  # answered: no deadline left
    await service.close()
    assert errors == []
    assert nothing_left(service)


async def test_asks_from_many_threads_at_once_are_all_queued_timed_and_answered(
    nexus: Nexus,
) -> None:
    service = WebSocketService(nexus.config(request_timeout=30))
    ids = from_threads(lambda: service.send_query("many"), threads=8, each=25)
    assert len(set(ids)) == 200
    assert service.outbox_size == 200 and service.pending_count == 200
    assert len(service._asks._held) == 200
    answered: set[str] = set()
    service.responses.subscribe(lambda r: answered.add(r.id))

    async with service:
        assert not service._asks._held  # each one has its deadline now
        await wait_for(lambda: answered == set(ids))
        await wait_for(lambda: service.pending_count == 0)
    assert nexus.stats.asks_received == 200  # each once
    assert nothing_left(service)


async def test_an_ask_queued_offline_times_out_with_the_usual_error_when_the_server_stalls(
    start_nexus: ServerFactory,
) -> None:
    gate = asyncio.Event()  # never set: the server holds every "slow" ask
    nexus = await start_nexus(engine=gated_engine(gate))
    service = WebSocketService(nexus.config(request_timeout=1.0))
    errors: list[NexusError] = []
    service.errors.subscribe(errors.append)
    (ask_id,) = from_threads(lambda: service.send_query("slow, never answered"))

    await service.connect()
    await wait_for(lambda: errors, message="the ask's deadline")
    (error,) = errors
    assert isinstance(error, RequestTimeout) and error.message_id == ask_id
    assert f"no answer to ask {ask_id} within 1s (request_timeout)" in str(error)
    assert nexus.stats.asks_received == 1  # it was sent, and the server sat on it
    assert service.pending_count == 0
    await service.close()
    assert nothing_left(service)
    gate.set()


async def test_the_deadline_counts_from_the_moment_the_ask_was_queued(nexus: Nexus) -> None:
    """Not from when the service met its loop: an ask queued longer ago than its
    deadline times out as soon as the service has a loop, before it is sent (as an
    ask queued on the loop while offline would have)."""
    service = WebSocketService(nexus.config(request_timeout=0.5))
    errors: list[NexusError] = []
    service.errors.subscribe(errors.append)
    queued = time.monotonic()
    (ask_id,) = from_threads(lambda: service.send_query("asked long ago"))
    await wait_for(lambda: time.monotonic() > queued + 1.0, message="the deadline to pass")

    await service.connect()
    await wait_for(lambda: errors)
    assert isinstance(errors[0], RequestTimeout) and errors[0].message_id == ask_id
    assert service.pending_count == 0 and service.outbox_size == 0
    answer = await service.ask("after")  # the connection works; the old ask never went
    assert answer.answer.endswith("after")
    assert nexus.stats.asks_received == 1
    await service.close()
    assert nothing_left(service)


async def test_close_before_any_loop_releases_everything_and_keeps_the_journal(
    nexus: Nexus, tmp_path: Path
) -> None:
    db = tmp_path / "client.db"
    service = WebSocketService(nexus.config(persist=db, request_timeout=30))
    ids = from_threads(lambda: service.send_query("kept for the next life"), threads=4, each=5)
    assert len(service._asks._held) == 20

    await service.close()  # never connected, never bound: no deadline was ever timed
    assert nothing_left(service)
    assert service._loop is None
    again = Journal(db)
    try:  # journaled as any ask: sent (and timed) in the next life
        assert sorted(key for key, _, _ in again.restored.outbox) == sorted(ids)
    finally:
        again.close()


async def test_an_ask_queued_offline_while_the_loop_binds_is_timed_too(nexus: Nexus) -> None:
    """A thread that queues while the service is being bound on its loop: its ask is
    timed on the loop either way (never a timer armed from the wrong thread)."""
    service = WebSocketService(nexus.config(request_timeout=30))
    ids: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set() and len(ids) < 500:
            try:
                ids.append(service.send_query("racing the bind"))
            except UsageError:  # refused once the loop runs the service: the usual rule
                return
            except BaseException as exc:
                failures.append(exc)
                return

    racer = threading.Thread(target=keep_asking)
    racer.start()
    await wait_for(lambda: ids)
    await service.connect()
    stop.set()
    await asyncio.to_thread(racer.join)
    assert failures == []
    await wait_for(lambda: not service._asks._held)
    pending = service._core.pending.lookups()[0]
    timed = [
        ask_id
        for ask_id, entry in pending.items()
        if entry.waiter is not None and entry.waiter.slot is not None
    ]
    assert sorted(timed) == sorted(pending)  # every ask still waiting has its deadline
    await service.close()
    assert nothing_left(service)


async def test_a_lazy_service_opens_for_an_ask_queued_offline_once_it_has_its_loop(
    nexus: Nexus,
) -> None:
    """The ask is demand: there is no loop to open the connection on when it is queued
    (no error then, it is queued), and the connection opens once the service has one."""
    service = WebSocketService(nexus.config(lazy=True, request_timeout=30))
    (ask_id,) = from_threads(lambda: service.send_query("lazy, offline"))
    assert service.outbox_size == 1
    async with service:  # lazy: bound, nothing opened by entering
        await wait_for(lambda: nexus.stats.asks_received == 1)  # the ask opened it
        await wait_for(lambda: service.pending_count == 0)
        assert ask_id not in service._core.pending.lookups()[0]
    assert nothing_left(service)
