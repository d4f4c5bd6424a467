"""The journal writer's batches under a hostile review: each flush() commits one batch,
failed batches absorb later ones, and a SIGKILL at any statement of a batch leaves it all
or nothing. Real SQLite files."""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nexus_reactive import journal_writer
from nexus_reactive.persist import Journal, PersistenceError, Restored

from .test_journal_review import HEX_KEY, ROOT, _at_least
from .test_journal_writer import Model
from .waiting import EVENTUALLY, poll


@pytest.mark.parametrize("key", [None, HEX_KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize("seed", range(8))
def test_one_batch_per_flush_and_failed_batches_absorbed_restore_as_a_replay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int, key: str | None
) -> None:
    """With an hour between transactions, each flush() commits exactly the events since
    the last one, as one batch: few ids (an ask queued, answered and queued again with
    the same id in one batch), clears between events, a history limit smaller than a
    batch. Writes fail at random points (the connection turned read-only), so failed
    batches absorb later ones, clears and re-queues included. The file always restores
    what a replay of the events one by one gives."""
    monkeypatch.setattr(journal_writer, "PACE", 3600.0)
    monkeypatch.setattr(journal_writer, "RETRY_DELAY", 0.005)
    rng = random.Random(seed)
    limit = rng.choice([2, 5])
    model = Model(limit)
    path = tmp_path / "batches.db"
    errors: list[PersistenceError] = []
    journal = Journal(path, history_limit=limit, key=key, on_error=errors.append)
    keys = ["a", "b", "c", "d"]
    failing = False

    def check(restored: Restored) -> None:
        assert restored.outbox == [(k, a, f) for k, (a, f) in model.outbox.items()]
        assert restored.history == model.history
        assert restored.quarantined == []

    try:
        for step in range(400):
            k = rng.choice(keys)
            frame = f"{step}:{k}".encode()
            roll = rng.random()
            if roll < 0.3:
                ask = rng.random() < 0.7
                journal.queued(k, ask, frame)
                model.queued(k, ask, frame)
            elif roll < 0.45:
                journal.answered(k, frame)
                model.received(frame, k)
            elif roll < 0.55:
                (journal.written if rng.random() < 0.5 else journal.abandoned)(k)
                model.done(k)
            elif roll < 0.75:
                journal.received(frame)
                model.received(frame)
            elif roll < 0.8:
                journal.clear_history()
                model.cleared()
            elif roll < 0.86:
                failing = not failing
                if failing:
                    journal._db.execute("PRAGMA query_only = ON")
                    failed = len(errors) + 1
                    journal.received(frame)  # something to write
                    model.received(frame)
                    journal.flush(0)  # the writer takes what is recorded, and fails
                    poll(functools.partial(_at_least, errors, failed))
                else:
                    journal._db.execute("PRAGMA query_only = OFF")
            elif roll < 0.97 and not failing:
                assert journal.flush(EVENTUALLY)
            elif not failing:
                journal.close()
                journal = Journal(path, history_limit=limit, key=key, on_error=errors.append)
                check(journal.restored)
        journal._db.execute("PRAGMA query_only = OFF")
        assert journal.flush(EVENTUALLY)
    finally:
        journal.close()
    again = Journal(path, history_limit=limit, key=key)
    again.close()
    check(again.restored)


_KILLED_AT = """
import sys, time
from nexus_reactive import journal_writer
journal_writer.PACE = 3600.0  # what is recorded below is one batch
from nexus_reactive.persist import Journal

path, stop, key = sys.argv[1], sys.argv[2], sys.argv[3] or None
journal = Journal(path, history_limit=3, key=key)
for i in range(4):
    journal.queued(f"old{i}", True, b"old %d" % i)
for i in range(3):
    journal.received(b"h%d" % i)
assert journal.flush(60)

def trace(statement):
    if stop and statement.startswith(stop):
        print("stopped", flush=True)
        time.sleep(600)

journal._db.set_trace_callback(trace)
journal.answered("old0", b"answer 0")  # a stored ask ends as its answer arrives
journal.queued("old1", True, b"old 1 again")  # queued again: replaced, and last
journal.clear_history()
journal.queued("new", False, b"new")
for i in range(4):  # more than the history keeps
    journal.received(b"new h%d" % i)
journal.abandoned("old2")
assert journal.flush(60)
print("committed", flush=True)
time.sleep(600)
"""

_BEFORE = (["old0", "old1", "old2", "old3"], [b"h0", b"h1", b"h2"])
_AFTER = (["old3", "old1", "new"], [b"new h1", b"new h2", b"new h3"])


@pytest.mark.parametrize("key", [None, HEX_KEY], ids=["plain", "encrypted"])
@pytest.mark.parametrize(
    "stop",
    [
        "BEGIN",
        "DELETE FROM history",  # the clear
        "SELECT name, seq FROM sqlite_sequence",  # encrypted: the numbering
        "DELETE FROM outbox",
        "INSERT OR REPLACE INTO outbox",
        "INSERT INTO history",
        "DELETE FROM history WHERE",  # the trim
        "COMMIT",
        "",  # after the commit
    ],
)
def test_sigkill_at_each_statement_of_a_batch_leaves_it_all_or_nothing(
    tmp_path: Path, stop: str, key: str | None
) -> None:
    """One batch holds every kind of statement (a clear, deletions, a re-queued row,
    new rows, history past its limit and the trim): killed at the start of any of
    them, the file holds the state before the batch; killed after its commit, the
    state after. Never an ask both answered and still to send."""
    if key is None and stop.startswith("SELECT"):
        pytest.skip("a plain journal does not number its rows itself")
    db = tmp_path / "killed.db"
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED_AT, str(db), stop, key or ""],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == ("stopped" if stop else "committed")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    journal = Journal(db, history_limit=3, key=key)
    journal.close()
    restored = journal.restored
    state = ([k for k, _, _ in restored.outbox], restored.history)
    assert state == (_AFTER if not stop else _BEFORE)
    assert restored.quarantined == []
    if not stop:
        assert restored.outbox[1] == ("old1", True, b"old 1 again")
