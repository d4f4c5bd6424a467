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

import functools
from collections import deque
from collections.abc import Container
from typing import TYPE_CHECKING, Any

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

    __slots__ = ("cleared", "events", "history", "outbox")

    def __init__(self, limit: int) -> None:
        self.outbox: dict[str, Entry] = {}
        self.history: deque[bytes] = deque(maxlen=limit)
        self.cleared = False
        #: How many events it sums up (the writer is told of the first; an error
        #: names them).
        self.events = 0

    def __bool__(self) -> bool:
        """Whether it changes anything in the file."""
        return bool(self.outbox or self.history or self.cleared)

    def absorb(self, later: Batch, stored: Container[str]) -> None:
        """Add the changes of ``later``, recorded after this one's.

        ``stored``: the keys the file's outbox holds. A key this batch was to store
        and ``later`` deletes leaves nothing, unless the file holds it: an ask asked
        and answered while this batch waits (a long outage) adds no trace to it.
        """
        outbox = self.outbox
        for key, entry in later.outbox.items():
            outbox.pop(key, None)
            if entry is not None or key in stored:
                outbox[key] = entry
        if later.cleared:
            self.history.clear()
            self.cleared = True
        self.history.extend(later.history)
        self.events += later.events


def write(
    db: sqlite3.Connection, cipher: JournalCipher | None, batch: Batch, history_limit: int
) -> None:
    """Apply ``batch`` to the journal's tables (inside a transaction the caller opens)."""
    if batch.cleared:
        db.execute("DELETE FROM history")
    outbox, history = batch.outbox, batch.history
    done = [key for key, entry in outbox.items() if entry is None]
    if done:
        _many(db, "DELETE FROM outbox WHERE key IN ({})", "?", done, 1)
    rows = [(key, *entry) for key, entry in outbox.items() if entry is not None]
    if cipher is None:
        if rows:
            flat: list[Any] = [value for row in rows for value in row]
            _many(db, _INSERT_OUTBOX, "(?, ?, ?)", flat, 3)
        if history:
            _many(db, "INSERT INTO history (frame) VALUES {}", "(?)", list(history), 1)
    elif rows or history:
        # Sealed rows are bound to their sequence number: give it ourselves.
        last = next_seqs(db)
        seal = cipher.seal
        if rows:
            first = last.get("outbox", 0) + 1
            sealed: list[Any] = []
            for seq, (key, ask, frame) in enumerate(rows, first):
                sealed += (seq, key, ask, seal("outbox", seq, frame, key, ask))
            _many(db, _INSERT_SEALED_OUTBOX, "(?, ?, ?, ?)", sealed, 4)
        if history:
            first = last.get("history", 0) + 1
            sealed = []
            for seq, frame in enumerate(history, first):
                sealed += (seq, seal("history", seq, frame))
            _many(db, "INSERT INTO history (seq, sealed) VALUES {}", "(?, ?)", sealed, 2)
    db.execute(
        "DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?",
        (history_limit,),
    )


_INSERT_OUTBOX = "INSERT OR REPLACE INTO outbox (key, ask, frame) VALUES {}"
_INSERT_SEALED_OUTBOX = "INSERT OR REPLACE INTO outbox (seq, key, ask, sealed) VALUES {}"
#: Rows per statement at most: within SQLite's oldest limits (999 parameters, 500
#: terms in a compound statement).
_MOST = 256


def _many(db: sqlite3.Connection, sql: str, term: str, flat: list[Any], width: int) -> None:
    """Run ``sql`` over the rows in ``flat`` (``width`` values each), many rows per
    statement: one step of SQLite (one release of the GIL) for up to a few hundred
    rows, instead of one each. The sizes are powers of two, so that a few statements
    serve every batch from the connection's cache of prepared statements."""
    rows = len(flat) // width
    size = _MOST
    while size * width > 999:
        size //= 2
    start = 0
    while start < rows:
        while size > rows - start:
            size //= 2
        db.execute(_statement(sql, term, size), flat[start * width : (start + size) * width])
        start += size


@functools.cache
def _statement(sql: str, term: str, rows: int) -> str:
    return sql.format(", ".join([term] * rows))
