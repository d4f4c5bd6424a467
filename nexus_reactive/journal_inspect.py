"""What a journal holds, without changing it: ``nexus-reactive journal check``.

:func:`inspect_journal` says whether a journal is encrypted, how many rows it holds,
and, given its key, whether every row authenticates; it lists the rows in quarantine
(unreadable rows an earlier open or migration set aside). It takes the journal's lock,
so it never reads a journal a client is writing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import PersistenceError
from .journal_db import (
    describe,
    explain,
    journal_path,
    open_cipher,
    probe,
    quarantined,
    read_rows,
    release_lock,
    take_lock,
)

if TYPE_CHECKING:
    import sqlite3

__all__ = ["Inspection", "inspect_journal"]


@dataclass
class Inspection:
    """A journal's state, as lines to show, and what is wrong with it.

    Attributes:
        lines: what it is and what it holds.
        problems: each unreadable or quarantined row, or a key that does not fit.
    """

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def inspect_journal(path: str | os.PathLike[str], key: bytes | None) -> Inspection:
    """Describe the journal at ``path``; with ``key``, check every row.

    Raises:
        PersistenceError: no journal there, it is locked, or it is not a database.
    """
    import sqlite3

    path = journal_path(path)
    if not os.path.isfile(path):
        raise PersistenceError(f"there is no journal at {path}: check the path")
    found = Inspection()
    lock = take_lock(path, migrating=True)
    try:
        db = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            _inspect(db, path, key, found)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise PersistenceError(explain(path, exc)) from None
    finally:
        release_lock(lock)
    return found


def _inspect(db: sqlite3.Connection, path: str, key: bytes | None, found: Inspection) -> None:
    from .journal_crypto import Unreadable

    kind, meta = probe(db)
    if kind == "new":
        raise PersistenceError(f"{path} holds no journal (no outbox or history): check the path")
    rows = {table: list(read_rows(db, kind, table)) for table in ("outbox", "history")}
    asks = sum(1 for row in rows["outbox"] if row[3])
    kept = quarantined(db)
    if kind == "plain":
        found.lines.append(
            f"{path}: plain (not encrypted): anyone who can read the file can read its messages"
        )
    else:
        cipher_name = meta.get("cipher", b"?").decode("utf-8", "replace")
        journal_id = meta.get("journal_id", b"").hex()[:16]
        found.lines.append(f"{path}: encrypted ({cipher_name}), journal id {journal_id}")
    found.lines.append(
        f"outbox: {len(rows['outbox'])} row(s) ({asks} ask(s)); history: "
        f"{len(rows['history'])} row(s); quarantine: {len(kept)} row(s)"
    )
    for row, reason in kept:
        found.problems.append(f"in quarantine: {describe(row)}: {reason}")
    if kind == "plain":
        if key is not None:
            found.lines.append("a key was given, but this journal is not encrypted")
        return
    if key is None:
        found.lines.append("no key given (--key-file): the rows were not checked")
        return
    try:
        cipher = open_cipher(path, kind, meta, key)
    except PersistenceError as exc:
        found.problems.append(str(exc))
        return
    assert cipher is not None
    unreadable = 0
    for table, table_rows in rows.items():
        for row in table_rows:
            _, seq, row_key, ask, value = row
            try:
                cipher.open(table, seq, value, row_key, ask)
            except Unreadable as exc:
                unreadable += 1
                found.problems.append(f"{describe(row)} cannot be read: {exc}")
    if not unreadable:
        found.lines.append("the key fits, and every row authenticates")
