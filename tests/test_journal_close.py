"""A :class:`Journal` used directly, by hostile callers: ``flush()`` or ``close()`` from
its own writer thread (an ``on_error`` or ``when_durable`` callback) is refused with a
:class:`UsageError` instead of waiting for itself forever; ``close()`` from many threads
at once closes everything once, and returns in each only once the journal is closed."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nexus_reactive import PersistenceError, UsageError
from nexus_reactive.persist import Journal

from .waiting import EVENTUALLY, poll


def full(journal: Journal) -> Callable[[], None]:
    """Make the journal's file unable to grow; returns what gives it room again."""
    assert journal.flush(EVENTUALLY)
    db = journal._db
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    db.execute(f"PRAGMA max_page_count = {pages}")
    return lambda: db.execute("PRAGMA max_page_count = 1000000") and None


@pytest.mark.parametrize("call", ["flush", "close"])
def test_flush_or_close_from_on_error_is_refused_not_a_deadlock(tmp_path: Path, call: str) -> None:
    raised: list[BaseException] = []
    journal: Journal | None = None

    def on_error(error: PersistenceError) -> None:
        assert journal is not None
        try:
            getattr(journal, call)()  # on the writer's thread
        except UsageError as exc:
            raised.append(exc)

    journal = Journal(tmp_path / "j.db", on_error=on_error)
    try:
        room = full(journal)
        journal.queued("big", True, bytes(100_000))
        poll(lambda: raised, message="on_error's call returned")
        assert str(raised[0]).startswith(
            f"{call}() was called on the journal's writer thread (from on_error or a "
            "when_durable callback), where it would wait for itself forever"
        )
        room()
        assert journal.flush(EVENTUALLY)  # the writer goes on: the retry commits
        assert not journal._closed
    finally:
        journal.close()
    again = Journal(tmp_path / "j.db")
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["big"]


def test_flush_from_a_when_durable_callback_is_refused(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.db")
    raised: list[BaseException] = []

    def durable(ok: bool) -> None:
        try:
            journal.flush()
        except UsageError as exc:
            raised.append(exc)

    try:
        journal.queued("a", True, b"a")
        journal.when_durable(durable)
        assert journal.flush(EVENTUALLY)
        poll(lambda: raised)
        journal.queued("b", True, b"b")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()


def close_at_once(journal: Journal, threads: int) -> list[tuple[bool, bool]]:
    """Call ``journal.close()`` from ``threads`` threads released by one barrier; what
    each saw of the journal as its call returned: (lock released, writer ended)."""
    barrier = threading.Barrier(threads)
    seen: list[tuple[bool, bool]] = []
    failed: list[BaseException] = []

    def close() -> None:
        barrier.wait()
        try:
            journal.close()
        except BaseException as exc:
            failed.append(exc)
        seen.append((journal._lock_fd is None, journal._thread.is_alive()))

    workers = [threading.Thread(target=close) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failed == []
    return seen


def test_close_from_many_threads_at_once_closes_once_and_returns_closed(
    tmp_path: Path,
) -> None:
    for round_ in range(20):
        journal = Journal(tmp_path / f"j{round_}.db")
        fd = journal._lock_fd
        assert fd is not None
        journal.queued("kept", True, b"x" * 10_000)  # something for close() to commit
        # Whichever close() returns, the journal is closed by then.
        assert close_at_once(journal, 8) == [(True, False)] * 8
        # The lock's descriptor was closed (once: no one else's was closed by mistake).
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)
        journal.close()  # and once more, later: nothing to do
        again = Journal(tmp_path / f"j{round_}.db")
        again.close()
        assert [key for key, _, _ in again.restored.outbox] == ["kept"]


def test_close_and_flush_after_close_from_a_later_thread_are_not_refused(tmp_path: Path) -> None:
    """Once the writer thread has ended, a new thread may get its identifier (the OS
    reuses them): that thread is not the writer, and close() again (idempotent) or
    flush() (``False`` at once, nothing pending) must not be refused as if it were."""
    journal = Journal(tmp_path / "j.db")
    journal.close()
    failed: list[BaseException] = []
    flushed: list[bool] = []

    def again() -> None:
        try:
            journal.close()
            flushed.append(journal.flush(EVENTUALLY))
        except BaseException as exc:
            failed.append(exc)

    for _ in range(5):  # the first new thread typically gets the ended writer's id
        worker = threading.Thread(target=again)
        worker.start()
        worker.join()
    assert failed == []
    assert flushed == [True] * 5
