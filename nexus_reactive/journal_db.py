"""The journal's file: its lock, its two layouts (plain and encrypted), and how to tell them.

Shared by the journal a service keeps (:mod:`nexus_reactive.persist`) and the commands
that migrate one (:mod:`nexus_reactive.journal_migrate`).

- **Plain** (no ``persist_key``): ``outbox(seq, key, ask, frame)`` and
  ``history(seq, frame)``, frames as sent and received.
- **Encrypted**: the same tables with the frame sealed in a column named ``sealed``
  (so that a version without encryption fails on it, instead of sending ciphertext),
  and a ``meta`` table: the format, the construction, the journal's id and its key
  check (:mod:`nexus_reactive.journal_crypto`). Rows that do not authenticate are
  moved, bytes untouched, to a ``quarantine`` table.

:func:`probe` reads which one a file is without writing anything, so a journal
opened with the wrong key (or none) is refused before any change.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from .errors import PersistenceError

if TYPE_CHECKING:
    import sqlite3

    from .journal_crypto import JournalCipher

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - SQLite's exclusive lock alone guards the file there
    fcntl = None

__all__ = [
    "PLAIN_SCHEMA",
    "SEALED_SCHEMA",
    "Kind",
    "Row",
    "describe",
    "explain",
    "journal_path",
    "make_cipher",
    "next_seqs",
    "open_cipher",
    "probe",
    "quarantine",
    "quarantined",
    "read_rows",
    "release_lock",
    "statements",
    "take_lock",
]

#: What a file holds: nothing of ours yet, a plain journal, an encrypted one.
Kind = Literal["new", "plain", "sealed"]
#: A stored row: ``(table, seq, key, ask, value)``; for history, key ``""`` and ask False.
Row = tuple[str, int, str, bool, bytes]

PLAIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    key   TEXT NOT NULL UNIQUE,
    ask   INTEGER NOT NULL,
    frame BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    frame BLOB NOT NULL
);
"""
SEALED_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    key    TEXT NOT NULL UNIQUE,
    ask    INTEGER NOT NULL,
    sealed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq    INTEGER PRIMARY KEY AUTOINCREMENT,
    sealed BLOB NOT NULL
);
"""
_QUARANTINE_SCHEMA = """CREATE TABLE IF NOT EXISTS quarantine (
    id     INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    key    TEXT NOT NULL,
    ask    INTEGER NOT NULL,
    value  BLOB NOT NULL,
    reason TEXT NOT NULL,
    at     REAL NOT NULL
)"""
_COLUMN = {"plain": "frame", "sealed": "sealed"}


# -- the lock ---------------------------------------------------------------------------


def journal_path(path: str | os.PathLike[str]) -> str:
    """A journal's path as given (``persist=``, a command's PATH), ``~`` expanded as
    ``signing_key=`` expands it."""
    return os.path.expanduser(os.fspath(path))


def take_lock(path: str, *, migrating: bool = False) -> int | None:
    """Take ``<path>.lock`` for this process without waiting, and write our pid in it.

    Args:
        path: the journal's file.
        migrating: for a ``journal`` command (the advice differs from a client's).

    Raises:
        PersistenceError: another process (or another journal of this one) holds
            it; the message names that process.
    """
    _check_place(path, migrating)
    if fcntl is None:
        return None
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PersistenceError(
            f"the journal {path} cannot be used: its lock file {lock_path} cannot be "
            f"opened ({exc.strerror}). Check the directory's permissions"
            + ("" if migrating else ", or pass another persist= path")
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_pid(fd)
        os.close(fd)
        raise PersistenceError(_locked(path, lock_path, holder, migrating)) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _check_place(path: str, migrating: bool) -> None:
    """Refuse a path that cannot hold a journal file, saying why, before the lock file
    is made next to it (``client.db/`` would get a stray ``client.db.lock``)."""
    other = "" if migrating else ", or pass another persist= path"
    if os.path.isdir(path):
        raise PersistenceError(
            f"the journal {path} is a folder: a journal is one file; pass its file's "
            f"path, such as {os.path.join(path, 'client.db')}"
        )
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise PersistenceError(
            f"the journal {path} cannot be made: its folder {folder} does not exist. "
            f"Create the folder first{other}"
        )


def _locked(path: str, lock_path: str, holder: int | None, migrating: bool) -> str:
    if holder == os.getpid():
        who = f"this process (pid {holder}) already has a journal open on it"
        stop = "close that service first"
    elif holder is not None:
        who = f"process {holder} is using it"
        stop = f"stop process {holder} (e.g. `kill {holder}`)"
    else:
        who = "another process is using it"
        stop = f"stop the process that holds {lock_path}"
    if migrating:
        return (
            f"the journal {path} is locked: {who}. A journal is changed only while no "
            f"client has it open: {stop}, then run this command again. Nothing was changed"
        )
    return (
        f"the journal {path} is locked: {who}. Each client process needs its own "
        f"persist file: {stop}, or pass another persist= path"
    )


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def release_lock(fd: int | None) -> None:
    """Release a lock from :func:`take_lock` (the file stays: removing it would race)."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def explain(path: str, exc: sqlite3.Error) -> str:
    """What a database error means for the journal at ``path``, and what to do."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return (
            f"the journal {path} is locked: another program is using the database "
            f"(find it with `fuser {path}`). Each client process needs its own persist "
            "file: stop that program, or pass another persist= path"
        )
    if "not a database" in text or "malformed" in text:
        return (
            f"the journal {path} is corrupt ({text}). Move it aside to start afresh; "
            "its unsent messages cannot be recovered by this client"
        )
    return f"the journal {path} cannot be used ({text})"


# -- layouts ----------------------------------------------------------------------------


def probe(db: sqlite3.Connection) -> tuple[Kind, dict[str, bytes]]:
    """Which layout ``db`` has, and its meta table; reads only."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "meta" in tables:
        meta = {
            str(name): bytes(value) for name, value in db.execute("SELECT name, value FROM meta")
        }
        if "format" in meta:
            return "sealed", meta
    if "outbox" in tables or "history" in tables:
        return "plain", {}
    return "new", {}


def statements(schema: str) -> list[str]:
    """A schema's statements, to run one by one inside a transaction (``executescript``
    would commit the transaction first)."""
    return [s.strip() for s in schema.split(";") if s.strip()]


def make_cipher(db: sqlite3.Connection, key: bytes) -> JournalCipher:
    """Give a new, empty file the encrypted layout, for ``key`` (inside a transaction)."""
    from .journal_crypto import CIPHER, FORMAT, JournalCipher, new_journal_id

    cipher = JournalCipher(key, new_journal_id())
    for statement in statements(SEALED_SCHEMA):
        db.execute(statement)
    db.executemany(
        "INSERT INTO meta (name, value) VALUES (?, ?)",
        [
            ("format", str(FORMAT).encode()),
            ("cipher", CIPHER.encode()),
            ("journal_id", cipher.journal_id),
            ("key_check", cipher.check),
        ],
    )
    return cipher


def open_cipher(
    path: str, kind: Kind, meta: dict[str, bytes], key: bytes | None
) -> JournalCipher | None:
    """The cipher for an existing journal, or ``None`` for a plain one.

    Raises:
        PersistenceError: an encrypted journal and no key, or another key; a plain
            journal and a key; a format this version cannot read. Nothing was changed.
    """
    from .journal_crypto import FORMAT, JournalCipher

    if kind == "plain" and key is not None:
        raise PersistenceError(
            f"the journal {path} is not encrypted, and persist_key= is set. Encrypt it "
            f"first, keeping every message: `nexus-reactive journal encrypt {path} "
            "--key-file KEYFILE`; or drop persist_key= to use it as it is. Nothing in it "
            "was changed"
        )
    if kind != "sealed":
        return None
    if key is None:
        raise PersistenceError(
            f"the journal {path} is encrypted: pass the key it was made with as "
            "persist_key. Nothing in it was read or changed"
        )
    version = meta["format"].decode("ascii", "replace")
    if version != str(FORMAT):
        raise PersistenceError(
            f"the journal {path} was written by a newer nexus-reactive (format "
            f"{version}; this version reads {FORMAT}): upgrade nexus-reactive to open it"
        )
    try:
        cipher = JournalCipher(key, meta["journal_id"])
        check = meta["key_check"]
    except (KeyError, ValueError):
        raise PersistenceError(
            f"the journal {path} is damaged: its encryption header (the meta table) is "
            "incomplete, so no key can open it. Move it aside to start afresh"
        ) from None
    if not cipher.matches(check):
        raise PersistenceError(
            f"the journal {path} is encrypted with another key: pass the key it was "
            "made with as persist_key (after `nexus-reactive journal rekey`, the new key). "
            "Nothing in it was read or changed"
        )
    return cipher


def read_rows(
    db: sqlite3.Connection, kind: Kind, table: str, newest: int | None = None
) -> Iterator[Row]:
    """The rows of ``table`` (``outbox`` or ``history``) in order; only the ``newest`` if set."""
    column = _COLUMN["sealed" if kind == "sealed" else "plain"]
    if table == "outbox":
        for seq, key, ask, value in db.execute(
            f"SELECT seq, key, ask, {column} FROM outbox ORDER BY seq"
        ):
            yield "outbox", int(seq), str(key), bool(ask), bytes(value)
        return
    query = f"SELECT seq, {column} FROM history ORDER BY seq"
    if newest is not None:
        query = f"SELECT * FROM ({query} DESC LIMIT {int(newest)}) ORDER BY seq"
    for seq, value in db.execute(query):
        yield "history", int(seq), "", False, bytes(value)


def next_seqs(db: sqlite3.Connection) -> dict[str, int]:
    """The last sequence number each table gave (``sqlite_sequence``)."""
    import sqlite3

    try:
        rows = db.execute("SELECT name, seq FROM sqlite_sequence").fetchall()
    except sqlite3.OperationalError:  # no table with AUTOINCREMENT yet
        return {}
    return {str(name): int(seq) for name, seq in rows}


def quarantine(db: sqlite3.Connection, rows: list[tuple[Row, str]], *, remove: bool = True) -> None:
    """Move ``rows`` (each with the reason) to the quarantine table, bytes untouched.

    Call inside a transaction. ``remove=False`` copies (into another file's table).
    """
    db.execute(_QUARANTINE_SCHEMA)
    now = time.time()
    for (table, seq, key, ask, value), reason in rows:
        db.execute(
            "INSERT INTO quarantine (source, seq, key, ask, value, reason, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (table, seq, key, ask, value, reason, now),
        )
        if remove:
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (seq,))


def _has_quarantine(db: sqlite3.Connection) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='quarantine'"
        ).fetchone()
        is not None
    )


def quarantined(db: sqlite3.Connection) -> list[tuple[Row, str]]:
    """The rows in quarantine, with the reason each was put there."""
    if not _has_quarantine(db):
        return []
    return [
        ((str(source), int(seq), str(key), bool(ask), bytes(value)), str(reason))
        for source, seq, key, ask, value, reason in db.execute(
            "SELECT source, seq, key, ask, value, reason FROM quarantine ORDER BY id"
        )
    ]


def describe(row: Row) -> str:
    """A row, as an error names it: its table, its number and, for the outbox, its id."""
    table, seq, key, ask, _ = row
    if table == "outbox":
        return f"outbox row {seq} ({'ask' if ask else 'message'} {key})"
    return f"history row {seq}"
