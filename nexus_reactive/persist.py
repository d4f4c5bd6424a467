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
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .core.events import ClientEvents
from .errors import PersistenceError, ProtocolError
from .messages import Message

if TYPE_CHECKING:
    import sqlite3  # imported where a journal opens: most clients never persist

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - SQLite's exclusive lock alone guards the file there
    fcntl = None

__all__ = ["Journal", "PersistenceError", "Restored"]

log = logging.getLogger("nexus_reactive.persist")

_SCHEMA = """
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

_RETRY_DELAY = 1.0  # seconds between attempts at a batch that failed


@dataclass
class Restored:
    """What a journal held when it was opened.

    Attributes:
        outbox: ``(key, is_ask, frame)`` in the order they were queued; for an ask
            the key is its id.
        history: received frames, oldest first (at most the newest ``history_limit``).
    """

    outbox: list[tuple[str, bool, bytes]] = field(default_factory=list)
    history: list[bytes] = field(default_factory=list)


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

    Raises:
        PersistenceError: the file is not a database, is locked by another process,
            or cannot be created.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        history_limit: int = 1_000,
        on_error: Callable[[PersistenceError], None] | None = None,
    ) -> None:
        import sqlite3

        self.path = os.fspath(path)
        self.history_limit = history_limit
        self._on_error = on_error
        self._queue: queue.SimpleQueue[_Op | threading.Event | None] = queue.SimpleQueue()
        self._lock_fd = _lock(self.path)
        try:
            # timeout=0: a database locked by anyone else fails now, instead of
            # blocking the caller (an event loop) for sqlite3's default 5 s.
            self._db = sqlite3.connect(
                self.path, timeout=0, check_same_thread=False, isolation_level=None
            )
            # EXCLUSIVE: a second process on the same file fails loudly at open
            # instead of both sending the same outbox.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self.restored = self._load()
            # Opened: from now on only the writer thread waits on the database, and
            # it may (a moment of contention must not fail a batch at once).
            self._db.execute("PRAGMA busy_timeout=5000")
        except sqlite3.Error as exc:
            if hasattr(self, "_db"):
                self._db.close()
            _unlock(self._lock_fd)
            raise PersistenceError(_explain(self.path, exc)) from None
        self._thread = threading.Thread(
            target=self._run, name="nexus-reactive-journal", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Journal {self.path}>"

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
        _unlock(self._lock_fd)
        self._lock_fd = None

    # -- internals -------------------------------------------------------------------

    def _load(self) -> Restored:
        outbox = [
            (str(key), bool(ask), bytes(frame))
            for key, ask, frame in self._db.execute(
                "SELECT key, ask, frame FROM outbox ORDER BY seq"
            )
        ]
        rows = self._db.execute(
            "SELECT frame FROM history ORDER BY seq DESC LIMIT ?", (self.history_limit,)
        ).fetchall()
        return Restored(outbox, [bytes(frame) for (frame,) in reversed(rows)])

    def _run(self) -> None:
        pending: list[_Op] = []
        waiters: list[threading.Event] = []
        stopping = False
        while not stopping:
            # A failed batch is retried after _RETRY_DELAY even if nothing new comes.
            batch: list[_Op | threading.Event | object | None] = []
            with contextlib.suppress(queue.Empty):
                batch.append(self._queue.get(timeout=_RETRY_DELAY if pending else None))
            # Take everything else already queued: one transaction for all of it.
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in batch:
                if item is None:
                    stopping = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                elif isinstance(item, tuple):
                    pending.append(item)
            if pending and self._commit(pending):
                pending = []
            if not pending or stopping:
                for waiter in waiters:
                    waiter.set()
                waiters = []

    def _commit(self, ops: list[_Op]) -> bool:
        import sqlite3  # already loaded by __init__: a dictionary look-up

        db = self._db
        try:
            db.execute("BEGIN")
            for op, key, frame in ops:
                if op == "queued" or op == "queued-other":
                    db.execute(
                        "INSERT OR REPLACE INTO outbox (key, ask, frame) VALUES (?, ?, ?)",
                        (key, op == "queued", frame),
                    )
                elif op == "done":
                    db.execute("DELETE FROM outbox WHERE key = ?", (key,))
                elif op == "received":
                    if key:
                        db.execute("DELETE FROM outbox WHERE key = ?", (key,))
                    db.execute("INSERT INTO history (frame) VALUES (?)", (frame,))
                elif op == "clear":
                    db.execute("DELETE FROM history")
            db.execute(
                "DELETE FROM history WHERE seq <= (SELECT MAX(seq) FROM history) - ?",
                (self.history_limit,),
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            error = PersistenceError(
                f"{_explain(self.path, exc)}; {len(ops)} change(s) kept in memory and "
                f"retried every {_RETRY_DELAY:g}s"
            )
            log.error("%s", error)
            if self._on_error is not None:
                self._on_error(error)
            return False
        return True


def _lock(path: str) -> int | None:
    """Take ``<path>.lock`` for this process without waiting, and write our pid in it.

    Raises:
        PersistenceError: another process (or another journal of this one) holds
            it; the message names that process.
    """
    if fcntl is None:
        return None
    lock_path = f"{path}.lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise PersistenceError(
            f"the journal {path} cannot be used: its lock file {lock_path} cannot be "
            f"opened ({exc.strerror}). Check the directory's permissions, or pass "
            "another persist= path"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = _read_pid(fd)
        os.close(fd)
        if holder == os.getpid():
            who = f"this process (pid {holder}) already has a journal open on it"
            fix = "close that service first, or pass another persist= path"
        elif holder is not None:
            who = f"process {holder} is using it"
            fix = f"stop process {holder} (e.g. `kill {holder}`), or pass another persist= path"
        else:
            who = "another process is using it"
            fix = f"stop the process that holds {lock_path}, or pass another persist= path"
        raise PersistenceError(
            f"the journal {path} is locked: {who}. Each client process needs its own "
            f"persist file: {fix}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip())
    except (OSError, ValueError):
        return None


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # releases the flock; the file stays (removing it would race)


def _explain(path: str, exc: sqlite3.Error) -> str:
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
