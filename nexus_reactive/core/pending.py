"""The table of asks waiting for their answer, and the memory of answered ids."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Pending", "PendingTable", "Reply"]

W = TypeVar("W")


class Reply(enum.Enum):
    """What a reply with a given id means."""

    FIRST = "first"  # the answer to a pending ask: deliver it and settle the ask
    DUPLICATE = "duplicate"  # that ask was answered already: drop it
    UNSOLICITED = "unsolicited"  # no ask of ours waits for it: deliver it only


_FIRST, _DUPLICATE, _UNSOLICITED = Reply.FIRST, Reply.DUPLICATE, Reply.UNSOLICITED


@dataclass(slots=True)
class Pending(Generic[W]):
    """One ask waiting for its answer.

    Attributes:
        frame: the encoded ask, kept to send again after a reconnect.
        waiter: what the asyncio layer settles (a future, a timer...), or ``None``
            for a fire-and-forget ask.
        on_wire: whether the frame was written to a connection that has not yet
            delivered its answer.
        next_chunk: the ``index`` of the next streamed piece to deliver.
        early: pieces that arrived ahead of ``next_chunk``, by index.
    """

    frame: bytes
    waiter: W | None = None
    on_wire: bool = False
    next_chunk: int = 0
    early: dict[int, Any] | None = None


class PendingTable(Generic[W]):
    """Asks by id, in the order they were made; answered ids remembered (bounded).

    Every answer reaches the application once: the first reply for an id settles it,
    a later one is recognised as a duplicate for ``remember`` more answers.
    """

    __slots__ = ("_answered", "_asks", "remember")

    def __init__(self, remember: int = 10_000) -> None:
        self.remember = remember
        self._asks: dict[str, Pending[W]] = {}
        self._answered: dict[str, None] = {}

    def __len__(self) -> int:
        return len(self._asks)

    def __contains__(self, ask_id: object) -> bool:
        return ask_id in self._asks

    def add(self, ask_id: str, frame: bytes, waiter: W | None = None) -> Pending[W]:
        entry = Pending(frame, waiter)
        self._asks[ask_id] = entry
        return entry

    def get(self, ask_id: str) -> Pending[W] | None:
        return self._asks.get(ask_id)

    def settle(self, ask_id: str) -> tuple[Reply, Pending[W] | None]:
        """Classify a reply for ``ask_id``; a first reply removes the ask."""
        entry = self._asks.pop(ask_id, None)
        if entry is not None:
            answered = self._answered
            answered[ask_id] = None
            if len(answered) > self.remember:
                del answered[next(iter(answered))]
            return _FIRST, entry
        if ask_id in self._answered:
            return _DUPLICATE, None
        return _UNSOLICITED, None

    def answered(self, ask_id: str) -> bool:
        """Whether ``ask_id`` was answered recently (its late pieces are stale)."""
        return ask_id in self._answered

    def discard(self, ask_id: str) -> Pending[W] | None:
        """Forget an ask that timed out or was cancelled; a late reply is unsolicited."""
        return self._asks.pop(ask_id, None)

    def on_wire(self) -> list[tuple[str, Pending[W]]]:
        """Asks written to the wire and not answered, in the order they were made."""
        return [(ask_id, e) for ask_id, e in self._asks.items() if e.on_wire]

    def drain_where(self, predicate: Callable[[Pending[W]], bool]) -> list[tuple[str, Pending[W]]]:
        """Remove and return the asks ``predicate`` selects, in the order made."""
        chosen = [(k, e) for k, e in self._asks.items() if predicate(e)]
        for ask_id, _ in chosen:
            del self._asks[ask_id]
        return chosen

    def drain(self) -> list[tuple[str, Pending[W]]]:
        """Remove and return every pending ask (to fail them all at once)."""
        items = list(self._asks.items())
        self._asks.clear()
        return items
