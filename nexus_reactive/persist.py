"""A durable journal of the outbox, the pending asks and the history, in SQLite.

``WebSocketConfig(persist="client.db")`` gives a service a :class:`Journal`. It
records, in order:

- every message queued to send (asks and others), until it no longer needs
  sending: an ask until its answer, any other message until it is written;
- every message received that a store keeps, and, in the same operation, the
  end of the ask it answers. So after a crash an answer is either durable or its
  ask is sent again (same id: the server replays the same answer), never lost
  and never recorded twice.

Writes never block the event loop: they go to a queue that one thread commits in
batched transactions (WAL mode). :meth:`Journal.flush` waits until everything
queued so far is durable. A write that fails (disk full, database locked) is
reported and retried; the running process keeps its state in memory meanwhile.

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
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .core.events import ClientEvents
from .errors import PersistenceError, ProtocolError
from .journal_batch import Batch, write
from .journal_db import (
    PLAIN_SCHEMA,
    SEALED_SCHEMA,
    Kind,
    Row,
    describe,
    explain,
    make_cipher,
    open_cipher,
    probe,
    quarantine,
    read_rows,
    release_lock,
    take_lock,
)
from .journal_keys import PersistKey, resolve_key
from .messages import Message

if TYPE_CHECKING:
    # sqlite3 and cryptography load where a journal opens: most clients never persist.
    from .journal_crypto import JournalCipher

__all__ = ["Journal", "PersistenceError", "Restored"]

log = logging.getLogger("nexus_reactive.persist")

_RETRY_DELAY = 1.0  # seconds between attempts at a batch that failed


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


# Operations, as tuples the writer thread applies in order.
_Op = tuple[str, str, bytes | None]


class Journal(ClientEvents):
    """The durable record of one service. Not shared between processes.

    It observes the service's message events (:class:`ClientEvents`): the service
    reports them to it, and to nothing else, in one place each.

    Args:
        path: the SQLite file (created if missing).
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

        self.path = os.fspath(path)
        self.history_limit = history_limit
        self._on_error = on_error
        self._queue: queue.SimpleQueue[_Op | threading.Event | None] = queue.SimpleQueue()
        # The key first: a provider that fails has touched nothing.
        secret = None if key is None else resolve_key(key, self.path)
        self._cipher: JournalCipher | None = None
        self._lock_fd = take_lock(self.path)
        try:
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
        self._thread = threading.Thread(
            target=self._run, name="nexus-reactive-journal", daemon=True
        )
        self._thread.start()
        self._closed = False

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

    # -- recording (any thread; cheap, never blocks) ---------------------------------

    def queued(self, key: str, is_ask: bool, frame: bytes) -> None:
        """A message was queued to send."""
        self._queue.put(("queued" if is_ask else "queued-other", key, frame))

    def written(self, key: str) -> None:
        """A message other than an ask was written to the wire: it is done."""
        self._queue.put(("done", key, None))

    sent = written

    def abandoned(self, ask_id: str) -> None:
        """An ask failed for its caller (timeout, disconnect): do not send it again."""
        self._queue.put(("done", ask_id, None))

    def received(self, frame: bytes, answers: str | None = None) -> None:
        """A message for the history; ``answers`` is the ask it settles, if any."""
        self._queue.put(("received", answers or "", frame))

    def answered(self, ask_id: str, frame: bytes) -> None:
        """The first answer to ``ask_id``: recorded and the ask done, in one operation."""
        self._queue.put(("received", ask_id, frame))

    def clear_history(self) -> None:
        """Forget the received messages."""
        self._queue.put(("clear", "", None))

    cleared = clear_history

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is committed.

        Returns:
            Whether it was, within ``timeout``.
        """
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        """Commit what is queued, stop the writer thread, close the database."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join()
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

    def _run(self) -> None:
        # The keys the file's outbox holds (as of the last commit): deleting another
        # key needs no statement.
        stored = {key for key, _, _ in self.restored.outbox}
        batch = Batch(self.history_limit)
        failed = False
        stopping = False
        while not stopping:
            # A failed batch is retried after _RETRY_DELAY even if nothing new comes.
            items: list[_Op | threading.Event | None] = []
            with contextlib.suppress(queue.Empty):
                items.append(self._queue.get(timeout=_RETRY_DELAY if failed else None))
            # Take everything else already queued: one transaction for all of it.
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outbox, history = batch.outbox, batch.history
            for item in items:
                if item is None:
                    stopping = True
                    continue
                if isinstance(item, threading.Event):
                    batch.waiters.append(item)
                    continue
                op, key, frame = item
                batch.events += 1
                if op == "received" or op == "done":
                    if key:
                        outbox.pop(key, None)
                        if key in stored:
                            outbox[key] = None
                    if op == "received":
                        history.append(frame or b"")
                elif op == "clear":
                    history.clear()
                    batch.cleared = True
                else:
                    outbox.pop(key, None)
                    outbox[key] = (op == "queued", frame or b"")
            if batch:
                failed = not self._commit(batch)
                if not failed:
                    for key, entry in batch.outbox.items():
                        if entry is None:
                            stored.discard(key)
                        else:
                            stored.add(key)
            if not failed or stopping:
                batch.release()
                batch = Batch(self.history_limit)

    def _commit(self, batch: Batch) -> bool:
        import sqlite3  # already loaded by __init__: a dictionary look-up

        db = self._db
        try:
            db.execute("BEGIN")
            write(db, self._cipher, batch, self.history_limit)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            error = PersistenceError(
                f"{explain(self.path, exc)}; {batch.events} change(s) kept in memory and "
                f"retried every {_RETRY_DELAY:g}s"
            )
            log.error("%s", error)
            if self._on_error is not None:
                self._on_error(error)
            return False
        return True
