"""A bounded memory of recently seen ids: what makes repeated answers harmless.

Every answer id reaches the application at most once. The ask table remembers the
ids it settled and the ids whose asks were abandoned (timed out, cancelled,
disconnected); a reply for one of those is recognised however often a server
repeats it. The memory is bounded: past ``limit`` ids the oldest is forgotten.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["DEFAULT_REMEMBER", "RecentIds"]

#: How many ids each memory keeps by default: with 32-character ids, about 1.5 MiB at most.
DEFAULT_REMEMBER = 10_000


class RecentIds:
    """The last ``limit`` ids added, in insertion order; O(1) add, test and remove.

    Adding an id already present refreshes it (it becomes the newest).

    An :class:`~collections.OrderedDict`: forgetting the oldest is O(1). (With a
    plain dict, ``next(iter(d))`` steps over every entry deleted from the front
    since the dict last resized: about 2 us per add once the memory is full.)
    """

    __slots__ = ("_ids", "limit")

    def __init__(self, limit: int = DEFAULT_REMEMBER) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    @property
    def ids(self) -> OrderedDict[str, None]:
        """The ids, oldest first (read-only for callers, but see :meth:`PendingTable.settle`):
        the same object for the memory's life, so a hot path can bind it once and test
        ``id in ids`` without a call."""
        return self._ids

    def add(self, item: str) -> None:
        """Remember ``item``; forget the oldest id past ``limit``."""
        ids = self._ids
        if item in ids:
            ids.move_to_end(item)
            return
        ids[item] = None
        if len(ids) > self.limit:
            ids.popitem(last=False)

    def pop(self, item: str) -> bool:
        """Forget ``item``; whether it was remembered."""
        return self._ids.pop(item, 0) is None
