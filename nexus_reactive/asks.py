"""The asks in flight: :class:`AskTracker`, the asyncio shell around the core's table.

The pure memory (which asks are pending, which ids were answered or abandoned)
is :class:`~nexus_reactive.core.PendingTable`; this module owns what asyncio adds
to it: each ask's future and its streamed-piece listener, its deadline (in
buckets, one timer for all: :mod:`nexus_reactive.ask_clock`), and what settles or
fails it. Nothing else changes that state: the receive side asks the tracker to
settle, the service to track or abandon, the connection to fail them all when it
gives up.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .ask_clock import AskClock
from .core import ClientCore, Deadlines
from .core.events import ClientEvents
from .core.meaning import server_error
from .errors import NexusError
from .messages import AskResponse, ErrorMessage, ResponseChunkMessage, ResponseMessage
from .waiter import Waiter

if TYPE_CHECKING:
    from .metrics import Meter
    from .outbound import Sender

__all__ = ["AskTracker", "Waiter"]

log = logging.getLogger("nexus_reactive.service")
_running_loop = asyncio.events._get_running_loop
_Future = asyncio.Future
_monotonic = time.monotonic


class AskTracker(AskClock):
    """Pending asks, their deadlines, the one timer, their waiters.

    Args:
        core: the pure client whose :class:`PendingTable` remembers the asks.
        events: the observer told of queued and abandoned asks.
        report: where a failure nobody awaits goes (the ``errors`` stream).
        request_timeout: the default deadline of an ask, in seconds (``None``: none).
        meter: told of each ask made and ended (``metrics=True``), or ``None``.
    """

    __slots__ = (
        "_asks",
        "_core",
        "_deadlines",
        "_events",
        "_lock",
        "_meter",
        "_plain",
        "_queued",
        "_report",
        "_shut",
        "_timeout",
        "changed",
        "chunk",
        "first",
        "first_answers",
        "lookups",
        "reply",
        "resend",
    )

    def __init__(
        self,
        core: ClientCore[Waiter],
        events: ClientEvents,
        report: Callable[[NexusError], None],
        request_timeout: float | None,
        meter: Meter | None = None,
    ) -> None:
        self._core = core
        self._events = events
        self._meter = meter
        # Told of each ask queued, unless nobody records (the base class does nothing).
        self._queued = None if type(events) is ClientEvents else events.queued
        self._plain = meter is None and self._queued is None  # begin()'s inline track
        self._report = report
        self._timeout = request_timeout
        super().__init__()
        self._deadlines: Deadlines[str] = Deadlines()
        self._lock = threading.Lock()
        self._shut = False
        #: Classify a reply by id (the core's table, bound once: the hot path).
        self.reply = core.reply
        #: Remove an ask the receive loop saw pending, at its first answer.
        self.first = core.pending.first
        #: The same for the answers a read opens with, in one call.
        self.first_answers = core.pending.first_answers
        #: Order a streamed piece of an answer (see ``ClientCore.chunk``).
        self.chunk = core.chunk
        #: Send a pending ask again first (the server rate-limited it).
        self.resend = core.resend
        #: The table's dicts of pending, answered and abandoned ids (read-only).
        self.lookups = core.pending.lookups()
        self._asks = self.lookups[0]
        #: Told when an ask is queued or leaves the table (a lazy connection's demand).
        self.changed: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._core.pending)

    # -- what the application does -------------------------------------------------------

    def track(
        self,
        ask_id: str,
        frame: bytes,
        future: asyncio.Future[AskResponse] | None,
        timeout: float | None = None,
        on_piece: Callable[[str], None] | None = None,
        now: float | None = None,
    ) -> None:
        """Queue an ask and follow it until it is answered, abandoned or times out.

        ``now``: the loop's time, if the caller has just read it. With a deadline and
        no event loop, from a thread that runs none: queued now, and timed from now
        once the service has its loop (see :meth:`bind`).

        Raises:
            OutboxFull: nothing was queued or tracked.
            ProtocolError: an ask with this id is pending already.
        """
        limit = timeout if timeout is not None else self._timeout
        loop = self._loop
        waiter = Waiter(future, on_piece)
        if limit is not None and loop is None:
            loop = _running_loop()
            if loop is None:
                self._track_offline(ask_id, frame, waiter, limit)
                return
            self.bind(loop)
        if self._plain:  # _submit, inline: nobody meters or records
            self._core.submit_ask(ask_id, frame, waiter)
        else:
            self._submit(ask_id, frame, waiter)
        if limit is not None and loop is not None:  # (a limit has a loop, found above)
            if now is None:
                now = loop.time()
            waiter.limit = limit
            waiter.slot = slot = self._deadlines.add(ask_id, now + limit)
            if self._timer_at is None or slot * self._deadlines.resolution < self._timer_at:
                self._arm(loop)
        if self.changed is not None:
            self.changed()

    def begin(
        self,
        ask_id: str,
        frame: bytes,
        sender: Sender,
        timeout: float | None,
        on_piece: Callable[[str], None] | None,
        loop: asyncio.AbstractEventLoop | None,
    ) -> tuple[asyncio.Future[AskResponse], bool]:
        """Track an ask and have it written; return its future and whether the caller
        writes it now (``await sender.send_now()``): see :meth:`ask`."""
        if loop is None:
            loop = asyncio.get_running_loop()
        # Connected, nothing queued, writer idle, no pacing: write from this task and
        # save the writer's wake-up (a loop iteration per ask). Order is unchanged:
        # nothing else was waiting to go first. (Asks made together go as a batch.)
        future: asyncio.Future[AskResponse]
        if loop is self._loop and self._plain:
            # track(), inline for the common case: bound to this loop, nobody metering
            # or recording the asks (a call less per ask).
            if self._asyncio_loop:  # what its create_future() and time() do, without them
                future, now = _Future(loop=loop), _monotonic()
            else:
                future, now = loop.create_future(), loop.time()
            # (with asks in flight, Sender.direct's first test is false: not called)
            direct = not self._asks and sender.direct(now)
            if timeout is None:  # the default: timed in the table's order (AskClock)
                limit = self._timeout
                if limit is not None:
                    waiter = Waiter(future, on_piece, None, now + limit, limit)
                    self._core.submit_ask(ask_id, frame, waiter)
                    if self._timer_at is None or waiter.due < self._timer_at:
                        self._arm(loop)
                else:
                    self._core.submit_ask(ask_id, frame, Waiter(future, on_piece))
            else:
                waiter = Waiter(future, on_piece, None, 0.0, timeout)
                self._core.submit_ask(ask_id, frame, waiter)
                waiter.slot = slot = self._deadlines.add(ask_id, now + timeout)
                if self._timer_at is None or slot * self._deadlines.resolution < self._timer_at:
                    self._arm(loop)
            if self.changed is not None:
                self.changed()
        else:
            future, now = loop.create_future(), loop.time()
            direct = sender.direct(now)
            self.track(ask_id, frame, future, timeout, on_piece, now)
        if not direct:
            sender.queued(now)
        return future, direct

    async def ask(
        self,
        ask_id: str,
        frame: bytes,
        sender: Sender,
        timeout: float | None = None,
        on_piece: Callable[[str], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> AskResponse:
        """Track an ask, have it written, and wait for exactly its answer.

        Abandoned if the caller stops waiting (cancelled): a late answer is then
        delivered once, to the streams. ``loop``: the running loop, if the caller has it.
        (``WebSocketService.ask`` does the same with :meth:`begin`, one coroutine less.)
        """
        future, direct = self.begin(ask_id, frame, sender, timeout, on_piece, loop)
        try:
            if direct:
                await sender.send_now()
            return await future
        except BaseException:  # (not a finally: an answered ask needs no look)
            if not future.done() or future.cancelled():
                self.abandon(ask_id)
            raise

    def abandon(self, ask_id: str) -> None:
        """Stop following an ask (its caller gave up); a late answer is delivered once."""
        entry = self._core.abandon(ask_id)
        if entry is None:
            return
        self._events.abandoned(ask_id)
        if self._meter is not None:
            self._meter.ended(ask_id, entry, "cancelled")
        if entry.waiter is not None:
            self._untime(ask_id, entry.waiter)
        if self.changed is not None:
            self.changed()

    # -- what the server does ------------------------------------------------------------

    def settle(self, waiter: Waiter, message: ResponseMessage | ErrorMessage) -> None:
        """The first answer to an ask (already removed by :attr:`reply`) arrived."""
        slot = waiter.slot
        if slot is not None:
            self._deadlines.remove(message.id, slot)
            waiter.slot = None
        if self.changed is not None:
            self.changed()
        future = waiter.future
        if future is None or future.done():
            return
        if type(message) is ResponseMessage:
            future.set_result(message.payload)
        else:
            future.set_exception(server_error(message))  # type: ignore[arg-type]

    def settle_all(self, waiters: list[Waiter], answers: list[ResponseMessage]) -> None:
        """:meth:`settle` for each first answer one read brought, in order (each ask
        already removed by the table's ``first``): one call for the read."""
        keys: list[str] = []
        slots: list[int] = []
        # (zip's strict= would parse a keyword on every call: ~2,000 instructions on
        # CPython 3.11, once per ask when asks go one at a time. Equal by construction.)
        for waiter, message in zip(waiters, answers):  # noqa: B905
            slot = waiter.slot
            if slot is not None:
                keys.append(message.id)
                slots.append(slot)
                waiter.slot = None
            future = waiter.future  # (its waiting task runs later: the loop schedules it)
            if future is not None and not future.done():
                future.set_result(message.payload)
        if keys:
            self._deadlines.remove_all(keys, slots)
        if self.changed is not None:
            self.changed()

    def piece(self, piece: ResponseChunkMessage) -> None:
        """Hand a streamed piece to the ask's listener (``ask_stream``), if any."""
        entry = self._core.pending.get(piece.id)
        if entry is not None and entry.waiter is not None and entry.waiter.on_piece is not None:
            try:
                entry.waiter.on_piece(piece.payload.delta)
            except Exception:
                log.exception("an ask_stream subscriber raised")

    # -- failing them at once --------------------------------------------------------------

    def fail_all(self, error: NexusError) -> None:
        """The connection gave up: every pending ask fails with ``error``."""
        for ask_id, entry in self._core.pending.drain():
            if self._meter is not None:
                self._meter.ended(ask_id, entry, "failed", error)
            self._fail(ask_id, entry.waiter, error)
        self._core.drop_unpending()
        if self.changed is not None:
            self.changed()

    def fail_awaited(self, error: NexusError) -> None:
        """``disconnect()``: awaited asks fail; fire-and-forget ones stay queued."""
        awaited = self._core.pending.drain_where(
            lambda e: e.waiter is not None and e.waiter.future is not None
        )
        for ask_id, entry in awaited:
            if self._meter is not None:
                self._meter.ended(ask_id, entry, "failed", error)
            self._fail(ask_id, entry.waiter, error)
            self._events.abandoned(ask_id)
        self._core.drop_unpending()
        if self.changed is not None:
            self.changed()

    def close(self) -> None:
        """Cancel the deadline timer (the service is closing), and forget the asks
        held for a loop: none will time them. Asks still pending (fire-and-forget
        ones, kept by a journal) end for the meter as ``closed``."""
        with self._lock:
            self._shut = True
            self._held.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if self._meter is not None:
            for ask_id in list(self._core.pending.lookups()[0]):
                entry = self._core.pending.get(ask_id)
                if entry is not None:
                    self._meter.ended(ask_id, entry, "closed")
