"""The outbox: frames waiting for a connection, in order, bounded."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import OutboxFull

__all__ = ["Outbox", "Outgoing", "Queued"]


class Outgoing(NamedTuple):
    """One encoded frame; ``ask_id`` is set for an ``ask`` tracked as pending, ``key``
    names any other message in a journal."""

    frame: bytes
    ask_id: str | None = None
    key: str | None = None


#: What the outbox holds: an :class:`Outgoing`, or the same fields in a plain tuple
#: (an ask's, made once per ask: a named tuple costs ~1,300 instructions more to make
#: and free). Read by index, not by name: ``[0]`` the frame, ``[1]`` the ask's id,
#: ``[2]`` the journal's key.
Queued = tuple[bytes, str | None, str | None]


class Outbox:
    """A FIFO of frames with a limit on what the application may queue.

    Frames that go back in (a send that failed, asks to send again after a
    reconnect) are not counted against the limit: they were accepted already.
    """

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: deque[Queued] = deque()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> deque[Queued]:
        """The queue itself, read-only for callers (the same object for the outbox's
        life): a hot path tests ``not items`` without a ``__len__`` call."""
        return self._items

    def put(self, item: Queued) -> None:
        """Queue a new frame.

        Raises:
            OutboxFull: ``limit`` frames are waiting already; nothing was queued.
        """
        if len(self._items) >= self.limit:
            raise OutboxFull(
                f"the outbox already holds {self.limit} messages waiting to be sent "
                "(outbox_limit); nothing was queued. Wait for the connection to drain "
                "it, or raise outbox_limit."
            )
        self._items.append(item)

    def put_accepted(self, item: Queued) -> None:
        """Queue a frame accepted before (e.g. restored from a journal), past the limit."""
        self._items.append(item)

    def put_front(self, items: Iterable[Queued]) -> None:
        """Put frames back at the head, keeping their order."""
        self._items.extendleft(reversed(list(items)))

    def pop(self) -> Queued | None:
        """The next frame to send, or ``None`` when empty."""
        return self._items.popleft() if self._items else None

    def clear(self) -> list[Queued]:
        items = list(self._items)
        self._items.clear()
        return items
