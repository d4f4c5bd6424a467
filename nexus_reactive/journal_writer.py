"""The journal's recording side, on the caller's thread, and its writer thread.

:class:`JournalWriter` is what a service tells of every message event (its
:class:`~nexus_reactive.core.events.ClientEvents`), and the thread that makes them
durable; :class:`~nexus_reactive.persist.Journal` adds the file: opening, locking,
restoring.

Recording sums an event up into the pending :class:`~nexus_reactive.journal_batch.Batch`
(a few dictionary operations under a lock: no queue, no allocation per event) and rings
the writer on a batch's first event only. The writer takes the whole batch at once and
commits it in one transaction, then leaves at least :data:`PACE` before the next unless
``flush()`` or ``close()`` wait: an event recorded while the writer is idle is
committed at once, and during a burst each transaction takes everything recorded
meanwhile. A batch is bounded (the live outbox, deletions of keys the file holds or
the writer is storing, the newest ``history_limit`` frames), so memory stays bounded
however far behind the writer falls, a failing disk included: a batch that fails is
kept, later ones are summed into it, and it is retried every :data:`RETRY_DELAY`.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .core.events import ClientEvents
from .errors import PersistenceError, UsageError
from .journal_batch import Batch, write
from .journal_db import explain

if TYPE_CHECKING:
    import sqlite3

    from .journal_crypto import JournalCipher

__all__ = ["PACE", "RETRY_DELAY", "JournalWriter"]

log = logging.getLogger("nexus_reactive.persist")

#: Seconds between attempts at a batch that failed.
RETRY_DELAY = 1.0
#: Seconds from the end of one transaction to the start of the next, at least, unless
#: ``flush()`` or ``close()`` wait. Fewer, larger transactions cost the writer's thread
#: (and the cores and the GIL it shares with the event loop) less per message, and an
#: ask answered within one never writes its outbox row. Longer would cost less still
#: (5 ms: about a quarter less of the writer's CPU with 100 asks in flight) but leave
#: more unflushed events to a crash during a burst; shorter, the reverse
#: (``python -m bench.journal_threads`` measures both).
PACE = 0.002


class JournalWriter(ClientEvents):
    """Records message events from any thread; one thread commits them in batches.

    A subclass opens the database, sets the attributes below, then calls
    :meth:`_start_writer`; :meth:`_stop_writer` commits what is left and joins.
    """

    path: str
    history_limit: int
    _db: sqlite3.Connection
    _cipher: JournalCipher | None
    _on_error: Callable[[PersistenceError], None] | None

    def _start_writer(self, stored: Iterable[str]) -> None:
        """Start the writer thread; ``stored``: the keys the file's outbox holds."""
        # What is recorded and not yet taken by the writer, summed up, under _lock.
        self._lock = threading.Lock()
        self._batch = Batch(self.history_limit)
        self._bell: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._stopping = False
        # Batches are numbered as the writer takes them. Under _lock: how many it took,
        # up to which one everything is committed, the one a flush waits for (no pause
        # before it), whether the writer has ended; and who waits (flush(): on _done,
        # when_durable(): a callback each, by token). A flush that gives up leaves
        # nothing behind.
        self._taken = self._durable = self._wanted = 0
        self._ended = False
        self._done = threading.Condition(self._lock)
        self._watchers: dict[int, tuple[int, Callable[[bool], None]]] = {}
        self._tokens = itertools.count()
        # The keys the file's outbox holds, or the writer holds to store: deleting
        # another key needs no statement, and no room in the batch.
        self._handed = set(stored)
        # The keys the file's outbox holds, as of the last commit (the writer's own).
        self._stored = set(self._handed)
        self._thread = threading.Thread(
            target=self._run, name="nexus-reactive-journal", daemon=True
        )
        self._thread.start()

    # -- recording (any thread; cheap, never blocks) ---------------------------------

    def queued(self, key: str, is_ask: bool, frame: bytes) -> None:
        """A message was queued to send."""
        lock = self._lock
        lock.acquire()  # not ``with``: this runs for every message
        try:
            batch = self._batch
            outbox = batch.outbox
            if key in outbox:  # queued again: it goes last, as a replay would
                del outbox[key]
            outbox[key] = (is_ask, frame)
            if not batch.events:
                self._bell.put(None)  # the writer is told once per batch
            batch.events += 1
        finally:
            lock.release()

    def written(self, key: str) -> None:
        """A message other than an ask was written to the wire: it is done."""
        self._settle(key, None)

    sent = written

    def abandoned(self, ask_id: str) -> None:
        """An ask failed for its caller (timeout, disconnect): do not send it again."""
        self._settle(ask_id, None)

    def received(self, frame: bytes, answers: str | None = None) -> None:
        """A message for the history; ``answers`` is the ask it settles, if any."""
        self._settle(answers, frame)

    def answered(self, ask_id: str, frame: bytes) -> None:
        """The first answer to ``ask_id``: recorded and the ask done, in one operation."""
        self._settle(ask_id, frame)

    def _settle(self, key: str | None, frame: bytes | None) -> None:
        # The message ``key`` is done, and ``frame`` joins the history: one batch holds
        # both, so one transaction commits both.
        lock = self._lock
        lock.acquire()
        try:
            batch = self._batch
            if key:
                outbox = batch.outbox
                if key in outbox:
                    del outbox[key]
                if key in self._handed:  # the file has it, or will: delete it
                    outbox[key] = None
            if frame is not None:
                batch.history.append(frame)
            if not batch.events:
                self._bell.put(None)
            batch.events += 1
        finally:
            lock.release()

    def clear_history(self) -> None:
        """Forget the received messages."""
        with self._lock:
            batch = self._batch
            batch.history.clear()
            batch.cleared = True
            if not batch.events:
                self._bell.put(None)
            batch.events += 1

    cleared = clear_history

    def flush(self, timeout: float | None = None) -> bool:
        """Block until everything recorded so far is committed.

        Returns:
            Whether it was, within ``timeout``: ``False`` at once if the journal has
            closed without committing it (its failures were reported).

        Raises:
            UsageError: called on the writer's thread (from ``on_error`` or a
                ``when_durable`` callback), which would wait for itself forever.
        """
        self._refuse_on_writer("flush")
        with self._done:
            target = self._target()
            self._done.wait_for(lambda: self._durable >= target or self._ended, timeout)
            return self._durable >= target

    def when_durable(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``callback(True)`` once everything recorded so far is committed, or
        ``callback(False)`` if the journal closes without committing it: from the
        writer's thread, or from this one at once if that is known already.

        Returns:
            A function that forgets ``callback`` (for a caller that stops waiting).
        """
        with self._lock:
            target = self._target()
            if self._durable < target and not self._ended:
                token = next(self._tokens)
                self._watchers[token] = (target, callback)
                return functools.partial(self._forget, token)
            durable = self._durable >= target
        callback(durable)
        return _nothing

    def _forget(self, token: int) -> None:
        with self._lock:
            self._watchers.pop(token, None)

    def _target(self) -> int:
        """The number of the batch that holds the last event recorded, and that the
        writer is to commit without a pause (under _lock)."""
        target = self._taken + 1 if self._batch.events else self._taken
        if target > self._durable and target > self._wanted:
            self._wanted = target
            self._bell.put(None)
        return target

    def _refuse_on_writer(self, name: str) -> None:
        """Refuse ``name()`` on the writer's thread: it would wait for that thread.

        The thread object, not its identifier: the OS gives an ended thread's
        identifier to the next thread started, which is not the writer."""
        if threading.current_thread() is self._thread:
            raise UsageError(
                f"{name}() was called on the journal's writer thread (from on_error or a "
                "when_durable callback), where it would wait for itself forever; nothing "
                f"was done. Call {name}() from another thread: hand it to one (a loop's "
                "call_soon_threadsafe, a queue) from the callback"
            )

    def _stop_writer(self) -> None:
        """Commit what is recorded (or report that it cannot be) and join the thread."""
        self._stopping = True
        self._bell.put(None)
        self._thread.join()

    # -- the writer thread ------------------------------------------------------------

    def _take(self) -> tuple[Batch, int]:
        """The batch recorded so far, and its number, for the writer; recording goes on
        in a new one."""
        with self._lock:
            batch = self._batch
            self._batch = Batch(self.history_limit)
            self._taken += 1
            number = self._taken
            _follow(self._handed, batch)
        return batch, number

    def _reached(self, number: int | None) -> None:
        """Every batch up to ``number`` is committed; ``None``: the writer ends."""
        calls = []
        with self._done:
            if number is None:
                self._ended = True
            else:
                self._durable = number
            durable, ended = self._durable, self._ended
            watchers = self._watchers
            for token, (target, callback) in list(watchers.items()):
                if target <= durable or ended:
                    del watchers[token]
                    calls.append((callback, target <= durable))
            self._done.notify_all()
        for callback, ok in calls:
            try:
                callback(ok)
            except Exception:  # a waiter's bug must not stop the writer
                log.exception("a journal flush callback failed")

    def _run(self) -> None:
        try:
            self._write()
        finally:
            # Whatever stopped it, nobody waits for it any longer.
            self._reached(None)

    def _write(self) -> None:
        held: Batch | None = None  # a batch that failed, retried at retry_at
        retry_at = 0.0
        next_at = 0.0  # the earliest next commit, unless flush() or close() wait
        bell = self._bell
        while True:
            wait = None if held is None else max(0.0, retry_at - time.monotonic())
            with contextlib.suppress(queue.Empty):
                bell.get(timeout=wait)
            while not (self._stopping or self._durable < self._wanted):
                left = next_at - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(queue.Empty):
                    bell.get(timeout=left)
            # Read before taking: what was recorded before close() is in this batch.
            stopping = self._stopping
            batch, number = self._take()
            if held is not None:
                held.absorb(batch, self._stored)
                batch = held
                if not stopping and time.monotonic() < retry_at:
                    continue
            committed = True
            if batch:
                committed = self._commit(batch, stopping)
                ended = time.monotonic()
                next_at = ended + PACE
                if committed:
                    _follow(self._stored, batch)
                elif not stopping:
                    held, retry_at = batch, ended + RETRY_DELAY
                    continue
            held = None
            if committed:
                self._reached(number)
            if stopping:
                return

    def _commit(self, batch: Batch, closing: bool) -> bool:
        import sqlite3  # already loaded by __init__: a dictionary look-up

        db = self._db
        try:
            db.execute("BEGIN")
            write(db, self._cipher, batch, self.history_limit)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            if closing:
                fate = "not committed before the journal closed: they are not durable"
            else:
                fate = f"kept in memory and retried every {RETRY_DELAY:g}s"
            error = PersistenceError(f"{explain(self.path, exc)}; {batch.events} change(s) {fate}")
            log.error("%s", error)
            if self._on_error is not None:
                try:
                    self._on_error(error)
                except Exception:  # a reporter's failure must not stop the writer
                    log.exception("the journal's on_error callback failed")
            return False
        return True


def _nothing() -> None:
    pass


def _follow(keys: set[str], batch: Batch) -> None:
    """Update ``keys`` (outbox keys a file will hold) by what ``batch`` writes or deletes."""
    for key, entry in batch.outbox.items():
        if entry is None:
            keys.discard(key)
        else:
            keys.add(key)
