"""The service's side of ``persist=``: open the journal, restore, flush, close.

:class:`Recorder` decides who observes a service's message events (the
:class:`~nexus_reactive.persist.Journal` with ``persist=``, else nobody), puts the
journal's unsent messages back in the core's outbox, keeps its history of the
previous life for a store, and carries the journal's write failures from its
thread to the service's loop. A failure while the service has no loop yet (a
message queued offline, before any ``connect()``) is held, the newest
:data:`HELD_LIMIT`, and reported on the loop the service is then bound to, or at
``close()``: the service's streams live on its loop's thread, never the writer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .core import ClientCore
from .core.events import ClientEvents
from .errors import NexusError, PersistenceError
from .messages import Message
from .persist import Journal

if TYPE_CHECKING:
    from .config import WebSocketConfig

__all__ = ["HELD_LIMIT", "Recorder"]

log = logging.getLogger("nexus_reactive.service")

#: How many journal failures are held while the service has no event loop (the newest;
#: each is logged as it happens, and the count of older ones is reported with them).
HELD_LIMIT = 100


class Recorder:
    """Who records a service's message events, and the journal's life if there is one.

    Args:
        config: the service's config: its journal's file (``persist``, ``None``:
            record nothing) and key (``persist_key``).
        core: the service's core, whose outbox the journal's unsent messages refill.
        history_limit: how many received messages the journal keeps.
        report: the service's error reporter (called on its loop).

    Raises:
        PersistenceError: the journal cannot be opened.
    """

    __slots__ = (
        "_dropped",
        "_held",
        "_lock",
        "_loop",
        "_report",
        "events",
        "journal",
        "restored_history",
    )

    def __init__(
        self,
        config: WebSocketConfig,
        core: ClientCore[Any],
        history_limit: int,
        report: Callable[[NexusError], None],
    ) -> None:
        self._report = report
        # The service's loop once it has one, and the failures held until then, under
        # _lock: a failure is either held or scheduled on the loop, in order, never lost.
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._held: deque[NexusError] = deque(maxlen=HELD_LIMIT)
        self._dropped = 0
        self.journal: Journal | None = None
        #: The journal's history of the previous life (a store shows it).
        self.restored_history: list[Message] = []
        if config.persist is not None:
            journal = Journal(
                config.persist,
                history_limit=history_limit,
                on_error=self._journal_error,
                key=config.persist_key,
            )
            self.journal = journal
            core.restore(journal.restored.outbox)
            self.restored_history = journal.restored_messages()
        #: The observer of message events: the journal, else one that ignores them.
        self.events: ClientEvents = self.journal if self.journal is not None else ClientEvents()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The service is bound to ``loop`` (from any thread): report there what was held."""
        with self._lock:
            self._loop = loop
            if self._held or self._dropped:
                loop.call_soon_threadsafe(self.report_held)

    def report_held(self) -> None:
        """Report the failures held while there was no loop (on the service's loop)."""
        with self._lock:
            held, dropped = list(self._held), self._dropped
            self._held.clear()
            self._dropped = 0
        if dropped:
            self._report(
                PersistenceError(
                    f"{dropped} earlier journal failure(s) while the service had no event "
                    f"loop were only logged; the newest {len(held)} follow"
                )
            )
        for error in held:
            self._report(error)

    def _journal_error(self, error: NexusError) -> None:
        # Called on the journal's thread: hop to the loop, or hold it until there is one.
        with self._lock:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # closed meanwhile: held
                    loop.call_soon_threadsafe(self._report, error)
                    return
            if len(self._held) == HELD_LIMIT:
                self._dropped += 1
            self._held.append(error)

    async def flush(self) -> None:
        """Wait until everything recorded in the journal is durable.

        No thread waits meanwhile (a flush given up, by ``wait_for`` say, holds none
        of the loop's executor: close() needs it).

        Raises:
            PersistenceError: the journal closed without committing it.
        """
        journal = self.journal
        if journal is None:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[bool] = loop.create_future()

        def settle(durable: bool) -> None:
            if not done.done():
                done.set_result(durable)

        def wake(durable: bool) -> None:  # on the journal's thread, or here
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(settle, durable)

        forget = journal.when_durable(wake)
        try:
            durable = await done
        finally:
            forget()
        if not durable:
            raise PersistenceError(
                f"the journal {journal.path} closed before it could commit everything "
                "recorded: those messages are not durable (its write failures were "
                "reported on errors)"
            )

    async def close(self, unsent: int) -> None:
        """Close the journal (which keeps the ``unsent`` messages), or warn of their loss."""
        if self.journal is not None:
            await asyncio.to_thread(self.journal.close)
            # Never bound to a loop (used offline, then closed): the failures go now.
            self.report_held()
            if unsent:
                log.info("%d unsent message(s) kept in the journal", unsent)
        elif unsent:
            log.warning("closed with %d unsent message(s) in the outbox", unsent)
