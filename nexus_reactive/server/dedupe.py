"""Idempotent asks: the reply to a recent ask id is remembered and sent again.

The protocol ("Delivery" in docs/protocol.md) makes an ask id an idempotency key: a client that lost
its connection sends the same ask again, and must get the same reply, computed
once. :class:`ReplyCache` keeps the encoded reply per key in one
:class:`~collections.OrderedDict` ordered by last use, so every operation is O(1)
(amortized, for the evictions):

- size: at most ``max_size`` entries; the least recently used goes first;
- time: an entry unused for ``ttl`` seconds is dropped (a hit refreshes it, so an
  entry lives at least ``ttl`` seconds after its last use, unless pushed out by
  ``max_size`` newer ones);
- in flight: a repeat that arrives while the first copy is still being computed
  waits for that result instead of computing it again. If the computation is
  abandoned (its connection closed), the entry is dropped and a waiter computes
  the reply itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass

__all__ = ["ReplyCache"]


@dataclass(slots=True)
class _Entry:
    reply: asyncio.Future[bytes]
    touched: float


class ReplyCache:
    """Encoded replies to recent asks, by key, with LRU and TTL eviction.

    Args:
        max_size: the most replies kept (at least 1).
        ttl: seconds an unused reply is kept (at least 0).
        clock: a monotonic clock in seconds; tests inject a fake one.

    Raises:
        ValueError: ``max_size`` is below 1 or ``ttl`` is negative.
    """

    def __init__(
        self, max_size: int, ttl: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        if ttl < 0:
            raise ValueError(f"ttl must not be negative, got {ttl}")
        self._max_size = max_size
        self._ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"ReplyCache(max_size={self._max_size}, ttl={self._ttl}, entries={len(self)})"

    async def get_or_compute(
        self, key: Hashable, compute: Callable[[], Awaitable[tuple[bytes, bool]]]
    ) -> tuple[bytes, bool]:
        """Return the remembered reply for ``key``, or compute and remember it.

        Args:
            key: the idempotency key.
            compute: called (at most once per live entry) to produce
                ``(reply, keep)``; with ``keep`` false the reply is handed to the
                requests already waiting for it but not remembered after that
                (e.g. a transient error that a retry should compute again).

        Returns:
            ``(reply, replayed)``: the reply bytes, and whether they came from an
            earlier computation rather than this call's own.

        Raises:
            BaseException: whatever ``compute`` raised (the entry is dropped).
        """
        while True:
            now = self._clock()
            self._expire(now)
            entry = self._entries.get(key)
            if entry is None:
                break
            entry.touched = now
            self._entries.move_to_end(key)
            future = entry.reply
            if future.done() and not future.cancelled():
                return future.result(), True
            try:
                return await asyncio.shield(future), True
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and task is not None and not task.cancelling():
                    continue  # the first computation was abandoned: take it over
                raise
        return await self._compute(key, compute), False

    async def _compute(
        self, key: Hashable, compute: Callable[[], Awaitable[tuple[bytes, bool]]]
    ) -> bytes:
        entry = _Entry(asyncio.get_running_loop().create_future(), self._clock())
        self._entries[key] = entry
        if len(self._entries) > self._max_size:
            self._entries.popitem(last=False)
        try:
            reply, keep = await compute()
        except BaseException:
            self._discard(key, entry)
            entry.reply.cancel()
            raise
        entry.reply.set_result(reply)
        if not keep:
            self._discard(key, entry)
        elif self._entries.get(key) is entry:
            # The time to live counts from the reply, not from the question.
            entry.touched = self._clock()
            self._entries.move_to_end(key)
        return reply

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
