"""The journal's writer: batches that sum events up, a writer that falls behind, stops
or dies mid-batch. Real SQLite files; the writer is held inside a transaction through
SQLite's own hooks on its connection (a progress handler, a statement trace)."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nexus_reactive import journal_writer
from nexus_reactive.persist import Journal, PersistenceError

from .waiting import EVENTUALLY, poll

ROOT = Path(__file__).resolve().parents[1]
KEY = "ab" * 32


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nexus-reactive-journal"]


@contextmanager
def held_mid_transaction(journal: Journal) -> Iterator[threading.Event]:
    """Hold the journal's writer inside its next transaction until the block ends.

    Yields an event set once the writer is held (it has begun a transaction and is
    executing a statement of it)."""
    held, release = threading.Event(), threading.Event()

    def progress() -> int:
        held.set()
        release.wait()
        return 0  # go on

    journal._db.set_progress_handler(progress, 1)
    try:
        yield held
    finally:
        release.set()


class Model:
    """What a journal must restore, by replaying the events one by one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.outbox: dict[str, tuple[bool, bytes]] = {}
        self.history: list[bytes] = []

    def queued(self, key: str, ask: bool, frame: bytes) -> None:
        self.outbox.pop(key, None)
        self.outbox[key] = (ask, frame)

    def done(self, key: str) -> None:
        self.outbox.pop(key, None)

    def received(self, frame: bytes, answers: str | None = None) -> None:
        if answers:
            self.done(answers)
        self.history = [*self.history, frame][-self.limit :]

    def cleared(self) -> None:
        self.history = []


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize("seed", range(12))
def test_what_is_restored_is_what_a_replay_of_the_events_gives(
    tmp_path: Path, seed: int, key: str | None
) -> None:
    """Random events, with commits at random points (flush) and one reopen: the file
    holds exactly the outbox, in order, and the history a replay one by one gives."""
    rng = random.Random(seed)
    limit = rng.choice([3, 50])
    model = Model(limit)
    path = tmp_path / "replay.db"
    journal = Journal(path, history_limit=limit, key=key)
    keys = [f"k{i}" for i in range(12)]
    try:
        for step in range(300):
            k = rng.choice(keys)
            frame = f"{step}:{k}".encode()
            roll = rng.random()
            if roll < 0.35:
                ask = rng.random() < 0.7
                journal.queued(k, ask, frame)
                model.queued(k, ask, frame)
            elif roll < 0.5:
                journal.answered(k, frame)
                model.received(frame, k)
            elif roll < 0.6:
                journal.written(k)
                model.done(k)
            elif roll < 0.67:
                journal.abandoned(k)
                model.done(k)
            elif roll < 0.85:
                answers = k if rng.random() < 0.3 else None
                journal.received(frame, answers)
                model.received(frame, answers)
            elif roll < 0.88:
                journal.clear_history()
                model.cleared()
            elif roll < 0.97:
                assert journal.flush(EVENTUALLY)
            else:
                journal.close()
                journal = Journal(path, history_limit=limit, key=key)
                restored = journal.restored
                assert restored.outbox == [(k, a, f) for k, (a, f) in model.outbox.items()]
                assert restored.history == model.history
    finally:
        journal.close()
    again = Journal(path, history_limit=limit, key=key)
    again.close()
    assert again.restored.outbox == [(k, a, f) for k, (a, f) in model.outbox.items()]
    assert again.restored.history == model.history


def test_memory_stays_bounded_while_the_writer_is_held_under_a_flood(tmp_path: Path) -> None:
    """The writer is stuck inside a transaction while 20,000 asks of 1 kB are queued and
    answered: what waits for it stays the size of one history, not of the flood, and
    once it goes on, everything the flood left is committed."""
    journal = Journal(tmp_path / "flood.db", history_limit=100)
    try:
        with held_mid_transaction(journal) as held:
            journal.queued("first", True, b"x" * 1_000)
            assert held.wait(EVENTUALLY)
            tracemalloc.start()
            try:
                for i in range(20_000):
                    key = f"ask-{i}"
                    journal.queued(key, True, b"%d" % i + bytes(1_000))
                    if i < 19_990:  # the last ten stay in flight
                        journal.answered(key, b"answer %d " % i + bytes(1_000))
                pending, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            # Unbounded, it would be over 40 MB (two fresh 1 kB frames per ask).
            assert pending < 2_000_000, pending
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = Journal(tmp_path / "flood.db", history_limit=100)
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == [
        "first",
        *(f"ask-{i}" for i in range(19_990, 20_000)),
    ]
    assert [frame.split()[1] for frame in again.restored.history] == [
        b"%d" % i for i in range(19_890, 19_990)
    ]


def test_a_failing_disk_under_a_flood_keeps_one_bounded_batch(tmp_path: Path) -> None:
    """Every commit fails (the file cannot grow) while asks flood in: the failed batch
    absorbs the later ones, stays bounded, and is committed whole once it can be."""
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "full.db", history_limit=50, on_error=errors.append)
    try:
        journal.queued("early", True, b"early")
        assert journal.flush(EVENTUALLY)
        (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
        journal._db.execute(f"PRAGMA max_page_count = {pages}")
        journal.queued("big", True, bytes(200_000))  # cannot fit
        poll(lambda: errors)
        tracemalloc.start()
        try:
            for i in range(10_000):
                journal.queued(f"a{i}", True, bytes(1_000) + b"%d" % i)
                journal.answered(f"a{i}", bytes(1_000) + b"%d" % i)
            journal.answered("early", b"the early answer")
            held, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert held < 1_000_000, held
        assert "retried" in str(errors[0])
        journal._db.execute("PRAGMA max_page_count = 1000000")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = Journal(tmp_path / "full.db", history_limit=50)
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["big"]
    assert again.restored.history[-1] == b"the early answer"
    assert len(again.restored.history) == 50


def test_close_while_the_writer_is_mid_batch_commits_everything(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "closing.db")
    with held_mid_transaction(journal) as held:
        journal.queued("in-the-held-batch", True, b"1")
        assert held.wait(EVENTUALLY)
        journal.queued("recorded-after", True, b"2")
        journal.answered("in-the-held-batch", b"answer")
        closing = threading.Thread(target=journal.close)
        closing.start()
        assert closing.is_alive()  # it waits for the writer...
    closing.join(EVENTUALLY)  # ...which, let go, commits both batches and stops
    assert not closing.is_alive()
    assert _writer_threads() == []
    again = Journal(tmp_path / "closing.db")
    again.close()
    assert again.restored.outbox == [("recorded-after", True, b"2")]
    assert again.restored.history == [b"answer"]


def test_flush_during_and_after_close_returns_instead_of_waiting_forever(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "flushed.db")
    with held_mid_transaction(journal) as held:
        journal.queued("held", True, b"1")
        assert held.wait(EVENTUALLY)
        closing = threading.Thread(target=journal.close)
        closing.start()
        poll(lambda: journal._stopping)
        flushed: list[bool] = []
        flushing = threading.Thread(target=lambda: flushed.append(journal.flush(EVENTUALLY)))
        flushing.start()  # during close: waits for the writer's last commit
    closing.join(EVENTUALLY)
    flushing.join(EVENTUALLY)
    assert flushed == [True]
    assert journal.flush() is True  # after close, no timeout: returns at once
    assert _writer_threads() == []


def test_close_with_a_batch_that_cannot_be_committed_reports_it_and_stops(
    tmp_path: Path,
) -> None:
    errors: list[PersistenceError] = []
    journal = Journal(tmp_path / "lost.db", on_error=errors.append)
    assert journal.flush(EVENTUALLY)
    (pages,) = journal._db.execute("PRAGMA page_count").fetchone()
    journal._db.execute(f"PRAGMA max_page_count = {pages}")
    journal.queued("too-big", True, bytes(200_000))
    poll(lambda: errors)
    journal.close()  # no retry loop left behind: one last attempt, then it stops
    assert _writer_threads() == []
    last = str(errors[-1])
    assert "1 change(s) not committed before the journal closed" in last
    assert str(tmp_path / "lost.db") in last


def test_flush_and_close_do_not_wait_for_the_pause_between_transactions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an hour between transactions, flush() and close() still commit at once."""
    monkeypatch.setattr(journal_writer, "PACE", 3600.0)
    journal = Journal(tmp_path / "paced.db")
    try:
        journal.queued("a", True, b"a")  # committed at once: the writer was idle...
        assert journal.flush(EVENTUALLY)
        journal.queued("b", True, b"b")  # ...this one would wait an hour
        assert journal.flush(EVENTUALLY)
        journal.queued("c", True, b"c")
    finally:
        journal.close()
    assert _writer_threads() == []
    again = Journal(tmp_path / "paced.db")
    again.close()
    assert [key for key, _, _ in again.restored.outbox] == ["a", "b", "c"]


def test_recording_from_many_threads_at_once_loses_nothing(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "threads.db", history_limit=100_000)
    start = threading.Barrier(4)

    def record(name: str) -> None:
        start.wait()
        for i in range(2_000):
            journal.queued(f"{name}-{i}", True, b"q")
            if i % 2:
                journal.answered(f"{name}-{i}", f"{name}-{i}".encode())

    threads = [threading.Thread(target=record, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(EVENTUALLY)
    assert journal.flush(EVENTUALLY)
    journal.close()
    again = Journal(tmp_path / "threads.db", history_limit=100_000)
    again.close()
    expected = {f"t{n}-{i}" for n in range(4) for i in range(0, 2_000, 2)}
    assert {key for key, _, _ in again.restored.outbox} == expected
    assert len(again.restored.history) == 4_000
    for n in range(4):  # each thread's keys in the order it queued them
        mine = [key for key, _, _ in again.restored.outbox if key.startswith(f"t{n}-")]
        assert mine == [f"t{n}-{i}" for i in range(0, 2_000, 2)]


_KILLED_MID_BATCH = """
import sys, time
from nexus_reactive.persist import Journal

journal = Journal(sys.argv[1], history_limit=10_000)
for i in range(50):
    journal.queued(f"a{i}", True, b"ask %d" % i)
for i in range(25):
    journal.answered(f"a{i}", b"answer %d" % i)
assert journal.flush(60)

def trace(statement):
    # The batch's outbox rows are written; its answers are next: stop here.
    if statement.startswith("INSERT INTO history"):
        print("mid-batch", flush=True)
        time.sleep(600)

journal._db.set_trace_callback(trace)
for i in range(25, 50):
    journal.answered(f"a{i}", b"answer %d" % i)
for i in range(1000):
    journal.queued(f"b{i}", True, b"more %d" % i)
time.sleep(600)
"""


@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_sigkill_mid_batch_leaves_the_last_commit_whole(tmp_path: Path, key: str | None) -> None:
    """A process killed inside a transaction: everything committed before survives, none
    of the half-written batch does, and no ask is both answered and still to send."""
    db = tmp_path / "killed.db"
    if key is not None:
        Journal(db, key=key).close()  # made encrypted; the child opens it with the key
    script = _KILLED_MID_BATCH
    if key is not None:
        script = script.replace("history_limit=10_000)", f"history_limit=10_000, key={key!r})")
    with subprocess.Popen(
        [sys.executable, "-c", script, str(db)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "mid-batch"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    assert child.returncode == -signal.SIGKILL
    journal = Journal(db, key=key, history_limit=10_000)
    journal.close()
    restored = journal.restored
    assert [k for k, _, _ in restored.outbox] == [f"a{i}" for i in range(25, 50)]
    assert restored.history == [b"answer %d" % i for i in range(25)]
    if key is None:
        with sqlite3.connect(db) as conn:
            (rows,) = conn.execute("SELECT COUNT(*) FROM outbox WHERE key LIKE 'b%'").fetchone()
        assert rows == 0
