"""The asks' clock: :class:`AskClock`, the part of :class:`~nexus_reactive.asks.AskTracker`
that times asks and ends those whose time is up.

One timer serves every deadline, armed on the loop's thread for the earliest. Asks
made on the loop with the default ``request_timeout`` need no structure of their own:
made one after another with the same limit, their deadlines come in the order of the
table of pending asks (a dict, in insertion order), so the timer reads the oldest
pending ones and stops at the first not yet due; they cost nothing to add or to
settle. Other asks (their own ``timeout=``, metered, queued from another thread) go
into :class:`~nexus_reactive.core.Deadlines` buckets. An ask with a deadline
queued from a thread that runs no event loop, before the service has one (``send_query``
offline), is queued at once and *held*: its deadline is timed once the service is bound
to its loop (:meth:`AskClock.bind`), counted from the moment it was queued, as any other
ask's is. An ask whose time is up is abandoned and fails with
:class:`~nexus_reactive.errors.RequestTimeout`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .core import ClientCore, Deadlines
from .core.events import ClientEvents
from .errors import NexusError, RequestTimeout
from .waiter import Waiter

if TYPE_CHECKING:
    from .metrics import Meter

__all__ = ["AskClock"]

_running_loop = asyncio.events._get_running_loop


class AskClock:
    """Deadlines, their one timer, and asks held for want of a loop: the state is the
    tracker's (its slots), this is what times it."""

    # What the clock sets; the tracker's own state is in its slots.
    __slots__ = ("_asyncio_loop", "_held", "_loop", "_timer", "_timer_at")

    _core: ClientCore[Waiter]
    _events: ClientEvents
    _meter: Meter | None
    _queued: Callable[[str, bool, bytes], None] | None
    _report: Callable[[NexusError], None]
    _deadlines: Deadlines[str]
    _lock: threading.Lock
    _shut: bool
    changed: Callable[[], None] | None

    def __init__(self) -> None:
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether the bound loop's ``create_future()`` and ``time()`` are asyncio's own
        #: (``asyncio.Future(loop=loop)``, ``time.monotonic()``): the tracker then makes
        #: and times an ask without those two calls.
        self._asyncio_loop = False
        # Asks queued with a deadline and no loop to time it: id -> (limit, when queued
        # by time.monotonic()). Any thread adds (under _lock); bind() times them.
        self._held: dict[str, tuple[float, float]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The service has its loop (any thread may say so): the asks held for want of
        one get their deadlines on it, each counted from when it was queued; asks
        queued meanwhile are demand on it (a lazy connection's)."""
        with self._lock:
            if self._loop is None:
                # asyncio's own methods, replaced neither by a subclass nor on the loop
                # itself (as virtual-clock test tools do: loop.time = ...). Set before
                # _loop: begin() reads it once _loop is set.
                base = asyncio.BaseEventLoop
                self._asyncio_loop = (
                    getattr(loop.time, "__func__", None) is base.time
                    and getattr(loop.create_future, "__func__", None) is base.create_future
                )
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
        _, lane = self._lane(None)
        if lane is not None:  # (rounded up to the buckets' resolution: one timer for many)
            res = self._deadlines.resolution
            lane = math.ceil(lane / res) * res
            when = lane if when is None else min(when, lane)
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
        now = loop.time()
        for ask_id in self._deadlines.pop_due(now):
            entry = pending.get(ask_id)
            if entry is not None and entry.waiter is not None:
                entry.waiter.slot = None
                self._expire(ask_id, entry.waiter.limit)
        for ask_id in self._lane(now)[0]:
            entry = pending.get(ask_id)
            if entry is not None and entry.waiter is not None:
                self._expire(ask_id, entry.waiter.limit)
        self._arm(loop)

    def _lane(self, now: float | None) -> tuple[list[str], float | None]:
        """The asks timed in the table's order that are due at ``now`` (none if
        ``None``), oldest first, and the deadline of the first that is not."""
        due: list[str] = []
        for ask_id, entry in self._core.pending.lookups()[0].items():
            waiter = entry.waiter
            if waiter is None or not waiter.due:
                continue  # timed by a bucket, or not at all
            if now is None or waiter.due > now:
                return due, waiter.due
            due.append(ask_id)
        return due, None

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
