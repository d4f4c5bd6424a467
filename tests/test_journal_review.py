"""The journal's promises under a hostile review: a disk that stays full for a long
outage, flush() callers that give up, close() that cannot commit. Real SQLite files.
What a batch sums up and a SIGKILL mid-batch: tests/test_journal_batches.py."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
from pathlib import Path

import pytest

from nexus_reactive import NexusError, WebSocketService, journal_writer
from nexus_reactive.journal_migrate import migrate
from nexus_reactive.persist import Journal, PersistenceError

from .conftest import Nexus
from .waiting import EVENTUALLY, poll, wait_for

HEX_KEY = "cd" * 32
ROOT = Path(__file__).resolve().parents[1]


def _fill_the_disk(journal: Journal) -> None:
    """From now on, no commit that grows the file fits (until the limit is lifted)."""
    assert journal.flush(EVENTUALLY)
    (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
    journal._db.execute(f"PRAGMA max_page_count = {pages}")


def _at_least(errors: list[PersistenceError], count: int) -> bool:
    return len(errors) >= count


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


# -- journals written before the writer batched -----------------------------------------

#: Written by the journal as it was before it batched (one statement per event, commit
#: c649ae7), with history_limit=5: eight messages queued (even ones asks), k0, k3, k6
#: answered, k1 queued again, seven received, k5 written. The key of the encrypted one.
_OLD_KEY = "ef" * 32
_OLD = (["k2", "k4", "k7", "k1"], [b"r2", b"r3", b"r4", b"r5", b"r6"])


@pytest.mark.parametrize("key", [None, _OLD_KEY], ids=["plain", "encrypted"])
def test_a_journal_written_before_batching_restores_takes_writes_and_migrates(
    tmp_path: Path, key: str | None
) -> None:
    kind = "plain" if key is None else "encrypted"
    db = tmp_path / "old.db"
    db.write_bytes((ROOT / "tests" / "data" / f"journal-before-batching-{kind}.db").read_bytes())
    journal = Journal(db, history_limit=5, key=key)
    try:
        restored = journal.restored
        assert ([k for k, _, _ in restored.outbox], restored.history) == _OLD
        assert restored.outbox[-1] == ("k1", False, b"frame 1 again")
        assert restored.quarantined == []
        journal.answered("k2", b"answer 2")  # a row the old writer stored
        journal.queued("k4", True, b"frame 4 again")
        journal.queued("new", True, b"new")
        journal.received(b"r7")
    finally:
        journal.close()
    after = (["k7", "k1", "k4", "new"], [b"r4", b"r5", b"r6", b"answer 2", b"r7"])
    old_key = None if key is None else bytes.fromhex(key)
    new_key = bytes.fromhex("12" * 32)
    for was, now in ((old_key, new_key), (new_key, None), (None, new_key)):
        if was != now:
            migrate(db, old_key=was, new_key=now)
        again = Journal(db, history_limit=5, key=now)
        again.close()
        assert ([k for k, _, _ in again.restored.outbox], again.restored.history) == after
        assert again.restored.quarantined == []


def test_close_during_a_retry_wait_commits_at_once_what_the_disk_now_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed batch waits an hour for its retry; the disk recovers; close() does not
    wait for that hour: it commits the held batch and what came after, and stops."""
    monkeypatch.setattr(journal_writer, "RETRY_DELAY", 3600.0)
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "waiting.db", history_limit=3, on_error=errors.append)
    _fill_the_disk(journal)
    journal.queued("big", True, bytes(200_000))
    poll(lambda: errors)
    journal.received(b"after the failure")
    journal.clear_history()
    journal.received(b"after the clear")
    journal._db.execute("PRAGMA max_page_count = 1000000")
    closing = threading.Thread(target=journal.close)
    closing.start()
    closing.join(EVENTUALLY)
    assert not closing.is_alive()
    assert len(errors) == 1
    assert journal.flush() is True
    again = Journal(tmp_path / "waiting.db", history_limit=3)
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["big"]
    assert again.restored.history == [b"after the clear"]


def test_an_error_callback_that_raises_does_not_stop_the_writer(tmp_path: Path) -> None:
    """on_error runs on the writer's thread (the service's hops to a loop, which may
    have closed meanwhile: RuntimeError). If it raises, the writer goes on: the failed
    batch is retried, and committed once the disk takes it."""
    calls: list[PersistenceError] = []

    def failing(error: PersistenceError) -> None:
        calls.append(error)
        raise RuntimeError("Event loop is closed")

    journal = Journal(tmp_path / "raising.db", on_error=failing)
    try:
        _fill_the_disk(journal)
        journal.queued("big", True, bytes(200_000))
        poll(lambda: calls)
        journal._db.execute("PRAGMA max_page_count = 1000000")
        journal.queued("after", True, b"after")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = Journal(tmp_path / "raising.db")
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["big", "after"]
