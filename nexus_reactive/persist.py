"""A durable journal of the outbox, the pending asks and the history, in SQLite.

``WebSocketConfig(persist="client.db")`` gives a service a :class:`Journal`. It
records, in order:

- every message queued to send (asks and others), until it no longer needs
  sending: an ask until its answer, any other message until it is written;
- every message received that a store keeps, and, in the same operation, the
  end of the ask it answers. So after a crash an answer is either durable or its
  ask is sent again (same id: the server replays the same answer), never lost
  and never recorded twice.

Writes never block the event loop: recording an event is a few dictionary
operations (:mod:`nexus_reactive.journal_writer`), and one thread commits what was
recorded in batched transactions (WAL mode, ``synchronous=NORMAL``: a commit survives
the process being killed, SIGKILL included; an operating system crash or a power cut
may lose the last ones, never the file's consistency). An event recorded while the
writer is idle is committed at once; during a burst, transactions are at least
2 ms apart, each taking everything recorded meanwhile. :meth:`Journal.flush` waits
until everything recorded so far is durable, without that pause. A write that fails
(disk full, database locked) is reported and retried; the running process keeps its
state in memory meanwhile, bounded (:mod:`nexus_reactive.journal_batch`).

One process per file. Opening never waits for another holder: a lock file next
to the database (``<path>.lock``, an ``flock`` held for the journal's life and
released by the kernel if the process dies) records the holder's pid, so a
second process fails at once with a :class:`PersistenceError` naming that pid
and the path; SQLite's own lock is taken with no busy timeout as a backstop.

With a key (``persist_key=``), every stored frame is sealed with AES-256-GCM
(:mod:`nexus_reactive.journal_crypto`), on the writer thread; the file's layout is
:mod:`nexus_reactive.journal_db`'s. A journal is plain or encrypted from its first
open: an encrypted one opened without its key, or a plain one with a key, is a
:class:`PersistenceError` raised before anything is read or written (``nexus-reactive
journal encrypt`` migrates a plain one). A row that does not authenticate is not
restored: it is moved, untouched, to the journal's ``quarantine`` table and logged at
ERROR, naming the row; the rest opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import PersistenceError, ProtocolError
from .journal_db import (
    PLAIN_SCHEMA,
    SEALED_SCHEMA,
    Kind,
    Row,
    describe,
    explain,
    journal_path,
    make_cipher,
    open_cipher,
    probe,
    quarantine,
    read_rows,
    release_lock,
    take_lock,
)
from .journal_keys import PersistKey, resolve_key
from .journal_writer import JournalWriter
from .messages import Message

if TYPE_CHECKING:
    # sqlite3 and cryptography load where a journal opens: most clients never persist.
    from .journal_crypto import JournalCipher

__all__ = ["Journal", "PersistenceError", "Restored"]

log = logging.getLogger("nexus_reactive.persist")


@dataclass
class Restored:
    """What a journal held when it was opened.

    Attributes:
        outbox: ``(key, is_ask, frame)`` in the order they were queued; for an ask
            the key is its id.
        history: received frames, oldest first (at most the newest ``history_limit``).
        quarantined: unreadable rows of an encrypted journal, set aside at this open.
    """

    outbox: list[tuple[str, bool, bytes]] = field(default_factory=list)
    history: list[bytes] = field(default_factory=list)
    #: The rows of an encrypted journal that did not authenticate at this open (moved
    #: to its quarantine table), each named as :func:`journal_db.describe` names it.
    quarantined: list[str] = field(default_factory=list)


class Journal(JournalWriter):
    """The durable record of one service. Not shared between processes.

    It observes the service's message events (:class:`ClientEvents`): the service
    reports them to it, and to nothing else, in one place each.

    Args:
        path: the SQLite file (created if missing; ``~`` is expanded).
        history_limit: how many received messages to keep.
        on_error: called (from the writer thread) with each write failure.
        key: encrypt what is stored (``persist_key=``): 32 bytes, 64 hex characters,
            or a callable returning either, called once, here. A new file is made
            encrypted; an existing one must have been made with this key.

    Raises:
        PersistenceError: the file is not a database, is locked by another process,
            or cannot be created; it is encrypted and ``key`` is missing or another
            key; it is plain and ``key`` is set. Nothing in the file is changed then.
        ConfigError: ``key`` (or what its provider returned) is not a key.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_limit: int = 1_000,
        on_error: Callable[[PersistenceError], None] | None = None,
        key: PersistKey | None = None,
    ) -> None:
        import sqlite3

        self.path = journal_path(path)
        self.history_limit = history_limit
        self._on_error = on_error
        # The key first: a provider that fails has touched nothing.
        secret = None if key is None else resolve_key(key, self.path)
        self._cipher: JournalCipher | None = None
        self._lock_fd = take_lock(self.path)
        try:
            # A new journal is owner-only, as its keys are: it holds the messages.
            # SQLite gives its -wal and -shm files the database file's mode.
            with contextlib.suppress(OSError):  # exists (keeps its mode), or sqlite says
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            # timeout=0: a database locked by anyone else fails now, instead of
            # blocking the caller (an event loop) for sqlite3's default 5 s.
            self._db = sqlite3.connect(
                self.path, timeout=0, check_same_thread=False, isolation_level=None
            )
            # EXCLUSIVE: a second process on the same file fails loudly at open
            # instead of both sending the same outbox.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            # Which journal this is, and whether the key fits, before any write.
            kind, meta = probe(self._db)
            self._cipher = open_cipher(self.path, kind, meta, secret)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if kind == "new" and secret is not None:
                self._db.execute("BEGIN")
                self._cipher = make_cipher(self._db, secret)
                self._db.execute("COMMIT")
            else:
                self._db.executescript(PLAIN_SCHEMA if self._cipher is None else SEALED_SCHEMA)
            self.restored = self._load()
            # Opened: from now on only the writer thread waits on the database, and
            # it may (a moment of contention must not fail a batch at once).
            self._db.execute("PRAGMA busy_timeout=5000")
        except BaseException as exc:
            if hasattr(self, "_db"):
                self._db.close()
            release_lock(self._lock_fd)
            if isinstance(exc, sqlite3.Error):
                raise PersistenceError(explain(self.path, exc)) from None
            raise
        # close() once, whoever calls it first; the others wait until it is closed.
        self._closing = threading.Lock()
        self._closed = False
        self._start_writer(key for key, _, _ in self.restored.outbox)

    def __repr__(self) -> str:
        return f"<Journal {self.path}{' (encrypted)' if self._cipher else ''}>"

    def restored_messages(self) -> list[Message]:
        """The restored history, decoded (unreadable frames are skipped and logged)."""
        from . import codec

        messages: list[Message] = []
        for frame in self.restored.history:
            try:
                messages.append(codec.decode(frame))
            except ProtocolError as exc:
                log.warning("skipped an unreadable message in the journal: %s", exc)
        if self.restored.outbox:
            log.info("restored %d unsent message(s) from %s", len(self.restored.outbox), self.path)
        return messages

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close the database.

        Idempotent, from any thread: a call made while another thread closes the
        journal returns once it is closed.

        Raises:
            UsageError: called on the writer's thread (from ``on_error`` or a
                ``when_durable`` callback), which would wait for itself forever.
        """
        self._refuse_on_writer("close")
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._stop_writer()
            self._db.close()
            release_lock(self._lock_fd)
            self._lock_fd = None

    # -- internals -------------------------------------------------------------------

    def _load(self) -> Restored:
        cipher = self._cipher
        kind: Kind = "plain" if cipher is None else "sealed"
        outbox = list(read_rows(self._db, kind, "outbox"))
        history = list(read_rows(self._db, kind, "history", newest=self.history_limit))
        if cipher is None:
            return Restored(
                [(key, ask, frame) for _, _, key, ask, frame in outbox],
                [frame for *_, frame in history],
            )
        from .journal_crypto import Unreadable  # loaded already: the cipher's module

        restored, bad = Restored(), list[tuple[Row, str]]()
        for row in (*outbox, *history):
            table, seq, key, ask, sealed = row
            try:
                frame = cipher.open(table, seq, sealed, key, ask)
            except Unreadable as exc:
                bad.append((row, str(exc)))
                continue
            if table == "outbox":
                restored.outbox.append((key, ask, frame))
            else:
                restored.history.append(frame)
        if bad:
            self._db.execute("BEGIN")
            quarantine(self._db, bad)
            self._db.execute("COMMIT")
            for row, reason in bad:
                restored.quarantined.append(describe(row))
                log.error(
                    "the journal %s: %s cannot be read (%s); it was not restored, and "
                    "was moved, untouched, to the journal's quarantine table "
                    "(`nexus-reactive journal check %s` lists them)",
                    self.path,
                    describe(row),
                    reason,
                    self.path,
                )
        return restored
