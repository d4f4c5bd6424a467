"""What the journal has yet to commit, summed up: a :class:`Batch`, and how it is written.

A batch holds the net effect of the events recorded since the writer last took one,
not the events themselves:

- ``outbox``: for each key, its last state: ``(ask, frame)`` to store, or ``None``
  to delete, in the order of each key's last ``queued`` (the order a replay of the
  events one by one would leave the rows in);
- ``history``: the newest ``limit`` frames received (the transaction would trim
  older ones anyway), and whether the history was cleared before them.

One batch is one transaction, so a state in the middle of it was never visible on
disk: summing it up changes nothing that can be read back, and an ask queued and
answered within one batch costs one row (its answer) instead of three statements.
It also bounds memory however far behind the writer falls: a batch holds at most
the live outbox, deletions of keys the file may hold, and ``limit`` frames.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from .journal_db import next_seqs

if TYPE_CHECKING:
    import sqlite3

    from .journal_crypto import JournalCipher

__all__ = ["Batch", "write"]

#: An outbox row to store, ``(ask, frame)``, or ``None``: delete the key's row.
Entry = tuple[bool, bytes] | None


class Batch:
    """The changes to commit in one transaction (see the module's docstring).

    Args:
        limit: how many received frames the journal keeps (``history_limit``).
    """

    __slots__ = ("cleared", "events", "history", "outbox", "waiters")

    def __init__(self, limit: int) -> None:
        self.outbox: dict[str, Entry] = {}
        self.history: deque[bytes] = deque(maxlen=limit)
        self.cleared = False
        #: How many events it sums up (an error names them).
        self.events = 0
        #: ``flush()`` calls waiting for it to be committed.
        self.waiters: list[threading.Event] = []

    def __bool__(self) -> bool:
        """Whether it changes anything in the file."""
        return bool(self.outbox or self.history or self.cleared)

    def absorb(self, later: Batch) -> None:
        """Add the changes of ``later``, recorded after this one's."""
        outbox = self.outbox
        for key, entry in later.outbox.items():
            outbox.pop(key, None)
            outbox[key] = entry
        if later.cleared:
            self.history.clear()
            self.cleared = True
        self.history.extend(later.history)
        self.events += later.events
        self.waiters += later.waiters

    def release(self) -> None:
        """Wake the ``flush()`` calls waiting for it."""
        for waiter in self.waiters:
            waiter.set()
        self.waiters = []


def write(
    db: sqlite3.Connection, cipher: JournalCipher | None, batch: Batch, history_limit: int
) -> None:
    """Apply ``batch`` to the journal's tables (inside a transaction the caller opens)."""
    if batch.cleared:
        db.execute("DELETE FROM history")
    outbox, history = batch.outbox, batch.history
    done = [(key,) for key, entry in outbox.items() if entry is None]
    if done:
        db.executemany("DELETE FROM outbox WHERE key = ?", done)
    rows = [(key, *entry) for key, entry in outbox.items() if entry is not None]
    if cipher is None:
        if rows:
            db.executemany("INSERT OR REPLACE INTO outbox (key, ask, frame) VALUES (?, ?, ?)", rows)
        if history:
            db.executemany("INSERT INTO history (frame) VALUES (?)", [(f,) for f in history])
    elif rows or history:
        # Sealed rows are bound to their sequence number: give it ourselves.
        last = next_seqs(db)
        seal = cipher.seal
        if rows:
            seq = last.get("outbox", 0)
            db.executemany(
                "INSERT OR REPLACE INTO outbox (seq, key, ask, sealed) VALUES (?, ?, ?, ?)",
                [
                    (s, key, ask, seal("outbox", s, frame, key, ask))
                    for s, (key, ask, frame) in enumerate(rows, seq + 1)
                ],
            )
        if history:
            seq = last.get("history", 0)
            db.executemany(
                "INSERT INTO history (seq, sealed) VALUES (?, ?)",
                [(s, seal("history", s, frame)) for s, frame in enumerate(history, seq + 1)],
            )
    db.execute(
        "DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?",
        (history_limit,),
    )
