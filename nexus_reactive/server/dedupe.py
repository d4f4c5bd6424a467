"""Idempotent asks: each answer is computed once, and its reply is remembered and sent again.

The protocol ("Delivery" in docs/protocol.md) makes an ask id an idempotency key: a client that lost
its connection sends the same ask again, and must get the same reply, computed
once. :class:`ReplyCache` keeps the encoded reply per key in one
:class:`~collections.OrderedDict` ordered by last use, so every operation is O(1)
(amortized, for the evictions):

- size: at most ``max_size`` entries; the least recently used goes first;
- time: an entry unused for ``ttl`` seconds is dropped (a hit refreshes it, so an
  entry lives at least ``ttl`` seconds after its last use, unless pushed out by
  ``max_size`` newer ones);
- in flight: the computation runs in a task of the cache's own, not of the request
  that started it. A repeat that arrives while it runs, on the same connection or
  another, joins it: it receives the chunks published so far, then the later ones,
  then the reply. A request that goes away (its connection closed) only stops
  waiting; when nobody has waited for ``abandon_after`` seconds the computation is
  cancelled and forgotten, so that a client that reconnects in time joins it and one
  that never comes back does not keep the engine busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

__all__ = ["Compute", "OnChunk", "Publish", "ReplyCache"]

#: Hands one encoded chunk to every request waiting for the answer (awaited in turn).
Publish = Callable[[bytes], Awaitable[None]]
#: Computes ``(reply, keep)``, publishing chunks on the way (see :meth:`ReplyCache.get_or_compute`).
Compute = Callable[[Publish], Awaitable[tuple[bytes, bool]]]
#: Receives the chunks of an answer for one waiting request.
OnChunk = Callable[[bytes], Awaitable[None]]


@dataclass(slots=True, eq=False)
class _Entry:
    key: Hashable
    reply: asyncio.Future[bytes]
    touched: float
    task: asyncio.Task[None] | None = None
    chunks: list[bytes] = field(default_factory=list)
    listeners: dict[Hashable, OnChunk] = field(default_factory=dict)
    waiters: int = 0
    abandon: asyncio.TimerHandle | None = None


class ReplyCache:
    """Encoded replies to recent asks, by key, with LRU and TTL eviction.

    Args:
        max_size: the most replies kept (at least 1).
        ttl: seconds an unused reply is kept (at least 0).
        abandon_after: seconds a computation goes on with nobody waiting for it
            before it is cancelled (at least 0).
        clock: a monotonic clock in seconds; tests inject a fake one.

    Raises:
        ValueError: ``max_size`` is below 1, or ``ttl`` or ``abandon_after`` is negative.
    """

    def __init__(
        self,
        max_size: int,
        ttl: float,
        *,
        abandon_after: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if ttl < 0:
            raise ValueError(f"ttl must not be negative, got {ttl}")
        if not abandon_after >= 0:
            raise ValueError(f"abandon_after must not be negative, got {abandon_after}")
        self._max_size = max_size
        self._ttl = ttl
        self._abandon_after = abandon_after
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._running: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ReplyCache(max_size={self._max_size}, ttl={self._ttl}, entries={len(self)})"

    @property
    def computing(self) -> int:
        """How many computations are running."""
        return len(self._running)

    async def get_or_compute(
        self,
        key: Hashable,
        compute: Compute,
        *,
        listener: Hashable = None,
        on_chunk: OnChunk | None = None,
    ) -> tuple[bytes, bool]:
        """Return the remembered reply for ``key``, or join or start its computation.

        Args:
            key: the idempotency key.
            compute: called (at most once per live entry, in a task of the cache's
                own) with a ``publish`` coroutine function for the answer's chunks,
                to produce ``(reply, keep)``; with ``keep`` false the reply is handed
                to the requests already waiting for it but not remembered after that
                (e.g. a transient error that a retry should compute again).
            listener: who receives chunks through ``on_chunk``: one registration per
                listener and key, so a connection that repeats an ask gets each chunk
                once. ``None``: this request only.
            on_chunk: awaited with each chunk: first those published before this
                request joined, then the rest as they come. Not called for a reply
                already computed.

        Returns:
            ``(reply, replayed)``: the reply bytes, and whether they came from a
            computation that this call did not start.

        Raises:
            BaseException: whatever ``compute`` raised (the entry is dropped).
        """
        while True:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(key)
            started = entry is None
            if entry is None:
                entry = self._start(key, compute)
            else:
                entry.touched = now
                self._entries.move_to_end(key)
                if entry.reply.done() and not entry.reply.cancelled():
                    return entry.reply.result(), True
            try:
                return await self._wait(entry, listener, on_chunk), not started
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if entry.reply.cancelled() and task is not None and not task.cancelling():
                    continue  # the computation was abandoned just as we joined: start again
                raise

    async def aclose(self) -> None:
        """Cancel every running computation and wait for it to end (at shutdown)."""
        tasks = list(self._running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: Hashable, compute: Compute) -> _Entry:
        entry = _Entry(key, asyncio.get_running_loop().create_future(), self._clock())
        # Mark an exception as retrieved: with no waiter left, nobody else reads it.
        entry.reply.add_done_callback(_retrieve)
        self._entries[key] = entry
        if len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
        task = asyncio.create_task(self._run(key, entry, compute), name="nexus-server-answer")
        entry.task = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return entry

    async def _run(self, key: Hashable, entry: _Entry, compute: Compute) -> None:
        async def publish(chunk: bytes) -> None:
            entry.chunks.append(chunk)
            for on_chunk in list(entry.listeners.values()):
                await on_chunk(chunk)

        try:
            reply, keep = await compute(publish)
        except asyncio.CancelledError:
            self._discard(key, entry)
            entry.reply.cancel()
            raise
        except BaseException as exc:
            self._discard(key, entry)
            if not entry.reply.done():
                entry.reply.set_exception(exc)
            return
        finally:
            entry.chunks.clear()
            entry.listeners.clear()
            if entry.abandon is not None:
                entry.abandon.cancel()
        entry.reply.set_result(reply)
        if not keep:
            self._discard(key, entry)
        elif self._entries.get(key) is entry:
            # The time to live counts from the reply, not from the question.
            entry.touched = self._clock()
            self._entries.move_to_end(key)

    async def _wait(self, entry: _Entry, listener: Hashable, on_chunk: OnChunk | None) -> bytes:
        entry.waiters += 1
        if entry.abandon is not None:
            entry.abandon.cancel()
            entry.abandon = None
        registered: Hashable = None
        try:
            if on_chunk is not None and (listener is None or listener not in entry.listeners):
                # The backlog is copied and the listener added in one step, so that
                # every chunk reaches it exactly once: from the backlog or live.
                backlog = list(entry.chunks)
                registered = listener if listener is not None else object()
                entry.listeners[registered] = on_chunk
                for chunk in backlog:
                    await on_chunk(chunk)
            return await asyncio.shield(entry.reply)
        finally:
            entry.waiters -= 1
            if registered is not None:
                entry.listeners.pop(registered, None)
            if entry.waiters == 0 and not entry.reply.done():
                self._schedule_abandon(entry)

    def _schedule_abandon(self, entry: _Entry) -> None:
        def abandon() -> None:
            entry.abandon = None
            if entry.waiters == 0 and entry.task is not None and not entry.task.done():
                self._discard(entry.key, entry)
                entry.task.cancel()

        if self._abandon_after == 0:
            abandon()
        else:
            loop = asyncio.get_running_loop()
            entry.abandon = loop.call_later(self._abandon_after, abandon)

    def _discard(self, key: Hashable, entry: _Entry) -> None:
        # The key may have been evicted and reused meanwhile: drop only our entry.
        if self._entries.get(key) is entry:
            del self._entries[key]

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            # An entry still being computed is never expired by time: a repeat must
            # find it. Entries behind it wait for it; max_size still bounds them.
            if not entry.reply.done() or now - entry.touched < self._ttl:
                return
            del entries[key]


def _retrieve(future: asyncio.Future[bytes]) -> None:
    if not future.cancelled():
        with contextlib.suppress(BaseException):
            future.exception()
