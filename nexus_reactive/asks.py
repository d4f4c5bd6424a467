"""The asks in flight: :class:`AskTracker`, the asyncio shell around the core's table.

The pure memory (which asks are pending, which ids were answered or abandoned)
is :class:`~nexus_reactive.core.PendingTable`; this module owns what asyncio adds
to it: each ask's future and its streamed-piece listener, its deadline (in
buckets, one timer for all), and what settles or fails it. Nothing else changes
that state: the receive side asks the tracker to settle, the service to track
or abandon, the connection to fail them all when it gives up.

An ask with a deadline queued from a thread that runs no event loop, before the
service has one (``send_query`` offline), is queued at once and *held*: its
deadline is timed once the service is bound to its loop (:meth:`AskTracker.bind`),
counted from the moment it was queued, as any other ask's is.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .core import ClientCore, Deadlines
from .core.events import ClientEvents
from .core.meaning import server_error
from .errors import NexusError, RequestTimeout
from .messages import AskResponse, ErrorMessage, ResponseChunkMessage, ResponseMessage
from .waiter import Waiter

if TYPE_CHECKING:
    from .metrics import Meter
    from .outbound import Sender

__all__ = ["AskTracker", "Waiter"]

log = logging.getLogger("nexus_reactive.service")
_running_loop = asyncio.events._get_running_loop


class AskTracker:
    """Pending asks, their deadlines, the one timer, their waiters.

    Args:
        core: the pure client whose :class:`PendingTable` remembers the asks.
        events: the observer told of queued and abandoned asks.
        report: where a failure nobody awaits goes (the ``errors`` stream).
        request_timeout: the default deadline of an ask, in seconds (``None``: none).
        meter: told of each ask made and ended (``metrics=True``), or ``None``.
    """

    __slots__ = (
        "_core",
        "_deadlines",
        "_events",
        "_held",
        "_lock",
        "_loop",
        "_meter",
        "_queued",
        "_report",
        "_shut",
        "_timeout",
        "_timer",
        "_timer_at",
        "changed",
        "chunk",
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
        self._report = report
        self._timeout = request_timeout
        self._deadlines: Deadlines[str] = Deadlines()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Asks queued with a deadline and no loop to time it: id -> (limit, when queued
        # by time.monotonic()). Any thread adds (under _lock); bind() times them.
        self._held: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._shut = False
        #: Classify a reply by id (the core's table, bound once: the hot path).
        self.reply = core.reply
        #: Order a streamed piece of an answer (see ``ClientCore.chunk``).
        self.chunk = core.chunk
        #: Send a pending ask again first (the server rate-limited it).
        self.resend = core.resend
        #: The table's dicts of pending, answered and abandoned ids (read-only).
        self.lookups = core.pending.lookups()
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

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The service has its loop (any thread may say so): the asks held for want of
        one get their deadlines on it, each counted from when it was queued; asks
        queued meanwhile are demand on it (a lazy connection's)."""
        with self._lock:
            if self._loop is None:
                self._loop = loop
            held, self._held = self._held, {}
        if held or len(self._core.pending):
            self._time_soon(held)

    def _submit(self, ask_id: str, frame: bytes, waiter: Waiter) -> None:
        meter = self._meter
        if meter is None:
            self._core.submit_ask(ask_id, frame, waiter)
        else:
            frame = meter.made(ask_id, frame, waiter)
            try:
                self._core.submit_ask(ask_id, frame, waiter)
            except Exception as exc:
                meter.refused(ask_id, waiter, exc)
                raise
        if self._queued is not None:
            self._queued(ask_id, True, frame)

    def _track_offline(self, ask_id: str, frame: bytes, waiter: Waiter, limit: float) -> None:
        """Queue an ask with a deadline on a thread without a loop, before the service
        has one; hold its deadline for :meth:`bind`. (Threads queue one at a time.)"""
        with self._lock:
            queued = time.monotonic()
            self._submit(ask_id, frame, waiter)
            if self._loop is None:
                self._held[ask_id] = (limit, queued)
                return
        self._time_soon({ask_id: (limit, queued)})  # bound meanwhile, on another thread

    def _time_soon(self, held: dict[str, tuple[float, float]]) -> None:
        loop = self._loop
        assert loop is not None
        if _running_loop() is loop:
            self._time_held(held)
        else:  # the loop's timer is armed on its own thread only
            loop.call_soon_threadsafe(self._time_held, held)

    def _time_held(self, held: dict[str, tuple[float, float]]) -> None:
        """On the loop: deadlines for asks queued without one, from when each was
        queued (elapsed by ``time.monotonic()``, the clock asyncio's loops use)."""
        loop = self._loop
        if self._shut or loop is None:
            return
        now, clock = loop.time(), time.monotonic()
        pending, deadlines = self._core.pending, self._deadlines
        for ask_id, (limit, queued) in held.items():
            entry = pending.get(ask_id)
            if entry is None or entry.waiter is None or entry.waiter.slot is not None:
                continue  # settled or abandoned meanwhile
            entry.waiter.limit = limit
            entry.waiter.slot = deadlines.add(ask_id, now + limit - (clock - queued))
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
        future: asyncio.Future[AskResponse] = loop.create_future()
        # Connected, nothing queued, writer idle, no pacing: write from this task and
        # save the writer's wake-up (a loop iteration per ask). Order is unchanged:
        # nothing else was waiting to go first. (Asks made together go as a batch.)
        now = loop.time()
        direct = sender.direct(now)
        self.track(ask_id, frame, future, timeout, on_piece, now)
        if not direct:
            sender.kick()
            sender.flush(now)
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
        finally:
            if not future.done() or future.cancelled():
                self.abandon(ask_id)

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
        if waiter.slot is not None:
            self._deadlines.remove(message.id, waiter.slot)
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

    # -- internals -------------------------------------------------------------------------

    def _fail(self, ask_id: str, waiter: Waiter | None, error: NexusError) -> None:
        """Fail one ask: its future if awaited, else report on ``errors``."""
        if waiter is None:
            return
        self._untime(ask_id, waiter)
        future = waiter.future
        if future is None:
            self._report(error)
        elif not future.done():
            future.set_exception(error)

    def _untime(self, ask_id: str, waiter: Waiter) -> None:
        if waiter.slot is not None:
            self._deadlines.remove(ask_id, waiter.slot)
            waiter.slot = None

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep one timer, for the earliest deadline bucket, armed on the loop's thread
        (a send that passed the thread check as the service was bound may be on another)."""
        if _running_loop() is not loop:
            loop.call_soon_threadsafe(self._arm, loop)
            return
        when = self._deadlines.next_due()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None if when is None else loop.call_at(when, self._on_due)
        self._timer_at = when

    def _on_due(self) -> None:
        self._timer = self._timer_at = None
        loop = asyncio.get_running_loop()
        pending = self._core.pending
        for ask_id in self._deadlines.pop_due(loop.time()):
            entry = pending.get(ask_id)
            if entry is not None and entry.waiter is not None:
                entry.waiter.slot = None
                self._expire(ask_id, entry.waiter.limit)
        self._arm(loop)

    def _expire(self, ask_id: str, limit: float) -> None:
        entry = self._core.abandon(ask_id)
        if entry is None:
            return
        self._events.abandoned(ask_id)
        if self.changed is not None:
            self.changed()
        error = RequestTimeout(
            f"no answer to ask {ask_id} within {limit:g}s (request_timeout); the server "
            "may be slow or unreachable. Raise the timeout or check state.error.",
            message_id=ask_id,
        )
        if self._meter is not None:
            self._meter.ended(ask_id, entry, "timed_out", error)
        self._fail(ask_id, entry.waiter, error)
