"""The journal's promises under a hostile review: a disk that stays full for a long
outage, flush() callers that give up, close() that cannot commit. Real SQLite files."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from pathlib import Path

import pytest

from nexus_reactive import NexusError, WebSocketService
from nexus_reactive.persist import Journal, PersistenceError

from .conftest import Nexus
from .waiting import EVENTUALLY, poll, wait_for


def _fill_the_disk(journal: Journal) -> None:
    """From now on, no commit that grows the file fits (until the limit is lifted)."""
    assert journal.flush(EVENTUALLY)
    (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
    journal._db.execute(f"PRAGMA max_page_count = {pages}")


def _taken(journal: Journal) -> None:
    """Wait until the writer has taken everything recorded so far (to commit or to hold)."""
    poll(lambda: not journal._batch.events, interval=0.0005)


def test_an_outage_does_not_keep_one_entry_per_ask_answered_during_it(tmp_path: Path) -> None:
    """The disk is full while asks come and go, each answered after the writer took it
    (as over a network): what waits for the writer is the asks in flight and the
    newest history, not a trace of every ask the outage saw."""
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "outage.db", history_limit=10, on_error=errors.append)
    try:
        _fill_the_disk(journal)
        journal.queued("too-big", True, bytes(200_000))
        poll(lambda: errors)
        tracemalloc.start()
        try:
            for i in range(1_500):
                key = f"ask-{i:06d}-" + "x" * 100  # long ids: each trace is visible
                journal.queued(key, True, b"q")
                _taken(journal)
                journal.answered(key, b"a")
                _taken(journal)
            pending, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # One entry per ask would be well over 200 kB (1,500 ids of 112 characters).
        assert pending < 100_000, pending
        journal._db.execute("PRAGMA max_page_count = 1000000")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = Journal(tmp_path / "outage.db", history_limit=10)
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["too-big"]
    assert again.restored.history == [b"a"] * 10


def test_flush_calls_that_time_out_during_an_outage_leave_nothing_behind(
    tmp_path: Path,
) -> None:
    """A health check calling flush(timeout) while the disk is full: each call gives
    up, and what it leaves waiting for the writer does not grow with the calls."""
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "checks.db", on_error=errors.append)
    try:
        _fill_the_disk(journal)
        journal.queued("too-big", True, bytes(200_000))
        poll(lambda: errors)
        assert journal.flush(0) is False
        tracemalloc.start()
        try:
            for _ in range(5_000):
                assert journal.flush(0) is False
            left, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        # One waiter kept per call would be several hundred kB.
        assert left < 50_000, left
        journal._db.execute("PRAGMA max_page_count = 1000000")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()


def test_flush_is_false_when_close_cannot_commit_what_it_waits_for(tmp_path: Path) -> None:
    """flush() returns True only once what was recorded is durable: a flush waiting on a
    full disk when the journal closes without committing returns False, and so does
    every flush() after that close."""
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "lost.db", on_error=errors.append)
    _fill_the_disk(journal)
    journal.queued("too-big", True, bytes(200_000))
    poll(lambda: errors)
    flushed: list[bool] = []
    waiting = threading.Thread(target=lambda: flushed.append(journal.flush(EVENTUALLY)))
    waiting.start()
    journal.close()  # one last attempt, which fails
    waiting.join(EVENTUALLY)
    assert "not committed before the journal closed" in str(errors[-1])
    assert flushed == [False]
    assert journal.flush() is False
    assert journal.flush(EVENTUALLY) is False


def test_flush_after_a_clean_close_is_true_and_false_for_what_came_after(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "after.db")
    journal.queued("a", True, b"a")
    journal.close()
    assert journal.flush() is True  # everything recorded was committed at close
    journal.queued("late", True, b"late")  # recorded after close: never committed
    assert journal.flush(0) is False


async def test_flushes_given_up_during_an_outage_do_not_block_close(
    nexus: Nexus, tmp_path: Path
) -> None:
    """`await asyncio.wait_for(service.flush(), t)` while the disk is full: each call
    gives up; none keeps a thread of the loop's executor waiting for the disk, so the
    executor still serves close() (and DNS lookups), and close() returns."""
    errors: list[NexusError] = []
    service = WebSocketService(nexus.config(persist=tmp_path / "client.db"))
    service.errors.subscribe(errors.append)
    journal = service._journal
    assert journal is not None
    try:
        await service.connect()
        await service.flush()
        journal._db.execute("PRAGMA query_only = ON")  # no write succeeds from now on
        service.send_query("unwritable")
        await wait_for(lambda: errors)
        for _ in range(40):  # more than the default executor has threads (32 at most)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(service.flush(), 0.01)
        await asyncio.wait_for(service.close(), EVENTUALLY)
    finally:
        if journal._thread.is_alive():  # let it end
            journal._db.execute("PRAGMA query_only = OFF")
        await service.close()
    assert isinstance(errors[-1], PersistenceError)


async def test_service_flush_says_when_what_it_waited_for_is_not_durable(
    nexus: Nexus, tmp_path: Path
) -> None:
    """The journal closed without committing (the disk stayed full): `await
    service.flush()` raises PersistenceError instead of returning as if durable."""
    errors: list[NexusError] = []
    service = WebSocketService(nexus.config(persist=tmp_path / "client.db"))
    service.errors.subscribe(errors.append)
    journal = service._journal
    assert journal is not None
    await service.connect()
    await service.flush()
    journal._db.execute("PRAGMA query_only = ON")  # no write succeeds from now on
    service.send_query("unwritable")
    await wait_for(lambda: errors)
    await service.close()
    with pytest.raises(PersistenceError, match="not durable"):
        await service.flush()
