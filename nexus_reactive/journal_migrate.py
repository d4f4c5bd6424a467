"""Change a journal's encryption: encrypt a plain one, decrypt one, or rotate its key.

``nexus-reactive journal encrypt|decrypt|rekey`` (:mod:`nexus_reactive.cli.journal`)
call :func:`migrate`, which never writes the journal itself:

1. it takes the journal's lock (``<path>.lock``), so no client has it open meanwhile
   and none can open it until the end (a client that tries is told which process
   holds it);
2. it copies every row, each with its sequence number, into a new file next to it,
   ``<path>.migrating`` (mode 0600), in one transaction, sealed under the new key (a
   fresh journal id) or plain; rows of the source that do not authenticate, and the
   source's quarantine, go to the new file's quarantine table, bytes untouched;
3. it reopens the new file and checks every row against the new key, fsyncs it,
   folds the journal's write-ahead log into the journal (so no log of the old file
   is left to be applied to the new one), and renames the new file over the
   journal: one atomic step. Then it fsyncs the directory.

Until that rename the journal is as it was: a failure (wrong key, disk full, a
crash, SIGKILL) leaves it intact, and at most a ``<path>.migrating`` file, which the
next run removes. The replaced file's disk blocks are freed, not wiped: see
docs/security.md for what that means for a plain journal's old text.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PersistenceError
from .journal_db import (
    PLAIN_SCHEMA,
    Kind,
    Row,
    explain,
    journal_path,
    make_cipher,
    next_seqs,
    open_cipher,
    probe,
    quarantine,
    quarantined,
    read_rows,
    release_lock,
    statements,
    take_lock,
)

if TYPE_CHECKING:
    import sqlite3

    from .journal_crypto import JournalCipher

__all__ = ["Migrated", "migrate"]

_TABLES = ("outbox", "history")


@dataclass(frozen=True)
class Migrated:
    """What :func:`migrate` put in the new journal.

    Attributes:
        path: the journal.
        outbox: rows of the outbox (messages not yet sent, asks not yet answered).
        history: rows of the received history.
        quarantined: rows in its quarantine table (unreadable; kept, never restored).
        unreadable: of those, how many failed to authenticate during this copy.
    """

    path: str
    outbox: int
    history: int
    quarantined: int
    unreadable: int


def migrate(
    path: str | os.PathLike[str],
    *,
    old_key: bytes | None,
    new_key: bytes | None,
    on_row: Callable[[int], None] | None = None,
) -> Migrated:
    """Rewrite the journal at ``path``: from ``old_key`` (``None``: plain) to ``new_key``.

    Args:
        path: the journal's file.
        old_key: the key it is encrypted with, or ``None`` if it is plain.
        new_key: the key to encrypt it with, or ``None`` to make it plain.
        on_row: called with the number of rows copied so far, after each one.

    Raises:
        PersistenceError: no journal there, a client has it open, it is not encrypted
            as ``old_key`` says, ``old_key`` is not its key, or the copy failed. The
            journal is unchanged.
    """
    import sqlite3

    path = journal_path(path)
    if not os.path.isfile(path):
        raise PersistenceError(f"there is no journal at {path}: check the path")
    lock = take_lock(path, migrating=True)
    work = f"{path}.migrating"
    try:
        _remove(work)  # left by an interrupted run: never in place of the journal
        src = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            src.execute("PRAGMA locking_mode=EXCLUSIVE")
            kind, meta = probe(src)
            _expect(path, kind, old_key)
            source = open_cipher(path, kind, meta, old_key)
            result = _copy(src, kind, source, path, work, new_key, on_row)
            _verify(work, new_key, result)
            src.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            src.close()
        _settle_log(path)
        os.chmod(work, os.stat(path).st_mode & 0o777)
        os.replace(work, path)
        _fsync_directory(path)
        return result
    except sqlite3.Error as exc:
        raise PersistenceError(f"{explain(path, exc)}. The journal was not changed") from None
    except OSError as exc:
        raise PersistenceError(
            f"the journal {path} cannot be migrated: {exc.strerror or exc} "
            f"({exc.filename or work}). The journal was not changed"
        ) from None
    finally:
        _remove(work)
        release_lock(lock)


def _expect(path: str, kind: Kind, old_key: bytes | None) -> None:
    if kind == "new":
        raise PersistenceError(f"{path} holds no journal (no outbox or history): check the path")
    if kind == "sealed" and old_key is None:
        raise PersistenceError(
            f"the journal {path} is already encrypted: `nexus-reactive journal rekey` "
            "changes its key, `nexus-reactive journal decrypt` makes it plain"
        )
    if kind == "plain" and old_key is not None:
        raise PersistenceError(
            f"the journal {path} is not encrypted: `nexus-reactive journal encrypt` encrypts it"
        )


def _copy(
    src: sqlite3.Connection,
    kind: Kind,
    source: JournalCipher | None,
    path: str,
    work: str,
    new_key: bytes | None,
    on_row: Callable[[int], None] | None,
) -> Migrated:
    import sqlite3

    from .journal_crypto import Unreadable

    os.close(os.open(work, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    dst = sqlite3.connect(work, isolation_level=None)
    try:
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.execute("PRAGMA synchronous=FULL")
        dst.execute("BEGIN")
        if new_key is not None:
            target: JournalCipher | None = make_cipher(dst, new_key)
            column = "sealed"
        else:
            target, column = None, "frame"
            for statement in statements(PLAIN_SCHEMA):
                dst.execute(statement)
        counts = dict.fromkeys(_TABLES, 0)
        bad: list[tuple[Row, str]] = []
        for table in _TABLES:
            for row in read_rows(src, kind, table):
                _, seq, key, ask, value = row
                try:
                    frame = value if source is None else source.open(table, seq, value, key, ask)
                except Unreadable as exc:
                    bad.append((row, str(exc)))
                    continue
                stored = frame if target is None else target.seal(table, seq, frame, key, ask)
                if table == "outbox":
                    dst.execute(
                        f"INSERT INTO outbox (seq, key, ask, {column}) VALUES (?, ?, ?, ?)",
                        (seq, key, ask, stored),
                    )
                else:
                    dst.execute(f"INSERT INTO history (seq, {column}) VALUES (?, ?)", (seq, stored))
                counts[table] += 1
                if on_row is not None:
                    on_row(sum(counts.values()))
        kept = quarantined(src) + bad
        if kept:
            quarantine(dst, kept, remove=False)
        # New rows continue the numbering where the journal's left off.
        numbered = next_seqs(dst)
        for name, seq in next_seqs(src).items():
            if name in _TABLES and seq > numbered.get(name, 0):
                dst.execute("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
                dst.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, seq))
        dst.execute("COMMIT")
    finally:
        dst.close()
    fd = os.open(work, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return Migrated(path, counts["outbox"], counts["history"], len(kept), len(bad))


def _verify(work: str, key: bytes | None, expected: Migrated) -> None:
    """Read the new file back, every row with the new key, before it replaces anything."""
    import sqlite3

    db = sqlite3.connect(work, isolation_level=None)
    try:
        kind, meta = probe(db)
        cipher = open_cipher(work, kind, meta, key)
        counts = dict.fromkeys(_TABLES, 0)
        for table in _TABLES:
            for _, seq, row_key, ask, value in read_rows(db, kind, table):
                if cipher is not None:
                    cipher.open(table, seq, value, row_key, ask)  # raises if it does not
                counts[table] += 1
    except Exception as exc:
        raise PersistenceError(
            f"the copy of the journal {expected.path} did not read back ({exc}). The "
            "journal was not changed"
        ) from None
    finally:
        db.close()
    if (counts["outbox"], counts["history"]) != (expected.outbox, expected.history):
        raise PersistenceError(
            f"the copy of the journal {expected.path} did not read back whole. The "
            "journal was not changed"
        )


def _settle_log(path: str) -> None:
    """No write-ahead log of the old file may outlive it: SQLite would apply it to the new."""
    log = f"{path}-wal"
    with contextlib.suppress(FileNotFoundError):
        if os.path.getsize(log) > 0:
            raise PersistenceError(
                f"the journal {path}'s write-ahead log ({log}) could not be folded into "
                "it; is another program using the file? The journal was not changed"
            )
        os.remove(log)
    with contextlib.suppress(FileNotFoundError):
        os.remove(f"{path}-shm")


def _fsync_directory(path: str) -> None:
    with contextlib.suppress(OSError):  # not every filesystem allows it; the rename stands
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove(work: str) -> None:
    for name in (work, f"{work}-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
