"""A journal failure while the service has no event loop yet (``persist=`` used offline:
``send_query`` before any ``connect``) reaches ``service.errors``, on the loop the
service is then bound to (or at ``close()``), never on the writer's thread; nothing
recorded is lost, and what is held meanwhile is bounded."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from nexus_reactive import NexusError, PersistenceError, WebSocketService
from nexus_reactive.persist import Journal
from nexus_reactive.recorder import HELD_LIMIT

from .conftest import Nexus, ServerFactory
from .waiting import EVENTUALLY, wait_for

BIG = "x" * 100_000  # a query that needs pages the full database does not have


def fill(service: WebSocketService) -> sqlite3.Connection:
    """Make the service's journal full (no page left to grow by); returns its database."""
    journal = service._journal
    assert journal is not None and journal.flush(EVENTUALLY)
    db = journal._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    return db


def failures_logged(caplog: pytest.LogCaptureFixture) -> int:
    records = caplog.records
    return sum(r.name == "nexus_reactive.persist" and "retried" in r.message for r in records)


async def test_a_failure_before_any_loop_reaches_errors_on_the_loop_and_loses_nothing(
    start_nexus: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="nexus_reactive.persist")
    nexus = await start_nexus(max_query_length=len(BIG))
    db = tmp_path / "client.db"
    # No request_timeout: no deadline may expire while the journal is made to fail.
    service = WebSocketService(nexus.config(persist=db, request_timeout=None))
    seen: list[tuple[NexusError, int]] = []
    service.errors.subscribe(lambda e: seen.append((e, threading.get_ident())))
    answered: list[str] = []
    service.messages.subscribe(lambda m: answered.append(m.id))
    database = fill(service)
    ids: list[str] = []
    # Offline, from a thread that runs no event loop at all.
    caller = threading.Thread(target=lambda: ids.append(service.send_query(BIG)))
    caller.start()
    caller.join()
    await wait_for(lambda: failures_logged(caplog), message="the writer failed")
    assert seen == []  # held: no loop to deliver it on, and never the writer's thread
    database.execute("PRAGMA max_page_count = 1000000")  # room again: the retry commits
    await service.flush()  # so no failure comes after this one

    await service.connect()  # now bound to this loop: what was held comes here
    await wait_for(lambda: seen)
    error, thread = seen[0]
    assert isinstance(error, PersistenceError) and "retried" in str(error)
    assert thread == threading.get_ident()  # on the loop's thread
    assert all(isinstance(e, PersistenceError) for e, _ in seen)
    # The answer, not only the ask's arrival: closing before it comes back keeps the ask
    # in the journal's outbox (rightly), which is not what this test is about.
    await wait_for(lambda: answered == ids)
    await service.flush()
    await service.close()
    again = Journal(db)
    try:  # the answer is durable: nothing was lost, nothing is left to send
        assert again.restored.outbox == []
        assert [m.id for m in again.restored_messages()] == ids
    finally:
        again.close()


async def test_a_service_closed_without_a_loop_reports_the_failure_before_errors_ends(
    nexus: Nexus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="nexus_reactive.persist")
    db = tmp_path / "client.db"
    service = WebSocketService(nexus.config(persist=db))
    seen: list[object] = []
    service.errors.subscribe(on_next=seen.append, on_completed=lambda: seen.append("done"))
    database = fill(service)
    ask_id = service.send_query(BIG)
    await wait_for(lambda: failures_logged(caplog), message="the writer failed")
    database.execute("PRAGMA max_page_count = 1000000")
    await service.close()  # never connected, so never bound: reported here
    assert isinstance(seen[0], PersistenceError)
    assert seen[-1] == "done"
    again = Journal(db)
    try:  # kept for the next life
        assert [key for key, _, _ in again.restored.outbox] == [ask_id]
    finally:
        again.close()


async def test_failures_from_many_threads_while_offline_are_held_bounded_then_all_said(
    nexus: Nexus, tmp_path: Path
) -> None:
    service = WebSocketService(nexus.config(persist=tmp_path / "client.db"))
    journal = service._journal
    assert journal is not None and journal._on_error is not None
    report = journal._on_error
    seen: list[NexusError] = []
    service.errors.subscribe(seen.append)
    threads, each = 6, 50
    barrier = threading.Barrier(threads)

    def fail(n: int) -> None:
        barrier.wait()
        for i in range(each):
            report(PersistenceError(f"failure {n}.{i}"))

    workers = [threading.Thread(target=fail, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert seen == []
    async with service:  # bound: the newest HELD_LIMIT, after a count of the rest
        await wait_for(lambda: len(seen) == HELD_LIMIT + 1)
        dropped = threads * each - HELD_LIMIT
        assert str(seen[0]).startswith(f"{dropped} earlier journal failure(s)")
        assert all(str(e).startswith("failure ") for e in seen[1:])
        # Once bound, a failure goes straight to the loop.
        report(PersistenceError("after"))
        await wait_for(lambda: str(seen[-1]) == "after")
    assert len(seen) == HELD_LIMIT + 2


async def test_send_query_with_a_deadline_from_a_thread_without_a_loop_is_journaled(
    nexus: Nexus, tmp_path: Path
) -> None:
    db = tmp_path / "client.db"
    service = WebSocketService(nexus.config(persist=db, request_timeout=30))
    ids: list[str] = []
    raised: list[BaseException] = []

    def offline() -> None:
        try:
            ids.append(service.send_query("timed once the service has its loop"))
        except BaseException as exc:  # it was a UsageError, and nothing queued
            raised.append(exc)

    caller = threading.Thread(target=offline)
    caller.start()
    caller.join()
    assert raised == [] and service.outbox_size == 1
    ids.append(service.send_query("from the loop: timed by it"))
    await service.close()
    again = Journal(db)
    try:
        assert [key for key, _, _ in again.restored.outbox] == ids
    finally:
        again.close()
