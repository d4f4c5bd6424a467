"""Ask deadlines in coarse buckets: O(1) to add and to forget, one timer for all.

A timer per ask (``loop.call_later``) costs a heap push, and a cancelled one stays
in the event loop's heap until its time would have come: with a minute's timeout
and thousands of asks a second, that is a heap of cancelled timers. Here asks go
into buckets of ``resolution`` seconds; settling an ask removes it in O(1); the
asyncio layer keeps one timer, for the earliest bucket. A timeout fires at most
``resolution`` late.
"""

from __future__ import annotations

import heapq
import math
from typing import Generic, TypeVar

__all__ = ["Deadlines"]

K = TypeVar("K")


class Deadlines(Generic[K]):
    """Keys by deadline, bucketed.

    Args:
        resolution: bucket width in seconds (how late a timeout may fire).
    """

    __slots__ = ("_buckets", "_order", "_ordered", "resolution")

    def __init__(self, resolution: float = 0.05) -> None:
        self.resolution = resolution
        self._buckets: dict[int, dict[K, None]] = {}
        self._order: list[int] = []  # heap of bucket numbers (some may be empty)
        # The numbers in the heap, each once: asks one at a time empty their bucket
        # and make it again; without this, each pushed the same number again (the
        # heap grew by one entry per ask until the bucket fell due, a minute later).
        self._ordered: set[int] = set()

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def add(self, key: K, deadline: float) -> int:
        """Track ``key`` until ``deadline``; returns its bucket, for :meth:`remove`."""
        slot = math.ceil(deadline / self.resolution)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {}
            if slot not in self._ordered:
                self._ordered.add(slot)
                heapq.heappush(self._order, slot)
        bucket[key] = None
        return slot

    def remove(self, key: K, slot: int) -> None:
        """Forget ``key`` (it was settled); O(1)."""
        bucket = self._buckets.get(slot)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._buckets[slot]  # its heap entry is skipped lazily

    def remove_all(self, keys: list[K], slots: list[int]) -> None:
        """:meth:`remove` each of ``keys`` from its bucket in ``slots`` (one call for
        the asks one read answered)."""
        buckets = self._buckets
        for key, slot in zip(keys, slots):  # noqa: B905 (equal; strict= costs a keyword parse)
            bucket = buckets.get(slot)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del buckets[slot]

    def next_due(self) -> float | None:
        """When the earliest non-empty bucket falls due, or ``None`` if none."""
        order = self._order
        while order and order[0] not in self._buckets:
            self._ordered.discard(heapq.heappop(order))
        return order[0] * self.resolution if order else None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key whose bucket is due at ``now``, earliest first."""
        due: list[K] = []
        order = self._order
        while order and order[0] * self.resolution <= now:
            slot = heapq.heappop(order)
            self._ordered.discard(slot)
            bucket = self._buckets.pop(slot, None)
            if bucket:
                due.extend(bucket)
        return due
