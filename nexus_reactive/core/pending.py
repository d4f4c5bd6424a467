"""The table of asks waiting for their answer, and the memory of answered and
abandoned ids (bounded, see :mod:`.recent`)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec

from .recent import DEFAULT_REMEMBER, RecentIds

__all__ = ["Pending", "PendingTable", "Reply"]

W = TypeVar("W")


class Reply(enum.Enum):
    """What a reply with a given id means."""

    FIRST = "first"  # the answer to a pending ask: deliver it and settle the ask
    DUPLICATE = "duplicate"  # that id was answered already: drop it
    LATE = "late"  # the first answer to an abandoned ask: deliver it only, once
    UNSOLICITED = "unsolicited"  # no ask of ours waits for it: deliver it only


_FIRST, _DUPLICATE, _LATE, _UNSOLICITED = (
    Reply.FIRST,
    Reply.DUPLICATE,
    Reply.LATE,
    Reply.UNSOLICITED,
)

# The replies without an entry, built once (a tuple per reply is measurable).
_DUPLICATE_REPLY: tuple[Reply, None] = (_DUPLICATE, None)
_LATE_REPLY: tuple[Reply, None] = (_LATE, None)
_UNSOLICITED_REPLY: tuple[Reply, None] = (_UNSOLICITED, None)


class Pending(msgspec.Struct, Generic[W]):
    """One ask waiting for its answer (a msgspec ``Struct``, for its constructor in
    C: one is made per ask, and a slotted dataclass's Python ``__init__`` cost ~1,000
    instructions more).

    Attributes:
        frame: the encoded ask, kept to send again after a reconnect.
        waiter: what the asyncio layer settles (a future, a timer...), or ``None``
            for a fire-and-forget ask.
        on_wire: whether the frame was written to a connection that has not yet
            delivered its answer.
        next_chunk: the ``index`` of the next streamed piece to deliver.
        early: pieces that arrived ahead of ``next_chunk``, by index (at most
            ``MAX_EARLY_CHUNKS``; :meth:`ClientCore.chunk` drops the rest).
        early_dropped: how many early pieces were dropped over that bound.
        retries: how many times it went back into the outbox after it was handed to
            the writer (a reconnect, a rate limit's refusal, a write that failed).
    """

    frame: bytes
    waiter: W | None = None
    on_wire: bool = False
    next_chunk: int = 0
    early: dict[int, Any] | None = None
    early_dropped: int = 0
    retries: int = 0

    @property
    def sends(self) -> int:
        """How many times its frame was handed to the writer (the attempts). Counted
        when it goes back, not each time it is taken: one attribute less to write per
        ask written (a Struct's attribute writes are not the interpreter's fast ones)."""
        return self.retries + self.on_wire


class PendingTable(Generic[W]):
    """Asks by id, in the order they were made; answered and abandoned ids remembered.

    Every answer id reaches the application at most once, however often a server
    repeats it: the first reply for an id settles its ask; the first reply for an
    abandoned ask (timed out, cancelled, drained) is delivered once; any later reply
    for those ids is a duplicate. Each of the two memories (answered, abandoned) keeps
    the last ``remember`` ids (default 10,000 each; a reply older than that is
    treated as new). A message whose id no ask of ours had (a server push) is not
    an answer: it is delivered as it comes, and remembered nowhere, so a flood of
    pushes neither grows memory nor pushes out the ids of our own asks.
    """

    __slots__ = ("_abandoned", "_abandoned_ids", "_answered", "_answered_ids", "_asks", "remember")

    def __init__(self, remember: int = DEFAULT_REMEMBER) -> None:
        self.remember = remember
        self._asks: dict[str, Pending[W]] = {}
        self._answered = RecentIds(remember)
        self._abandoned = RecentIds(remember)
        self._answered_ids = self._answered.ids
        self._abandoned_ids = self._abandoned.ids

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

    def lookups(self) -> tuple[dict[str, Pending[W]], dict[str, None], dict[str, None]]:
        """The dicts a reply's id is looked up in: pending asks, answered ids, abandoned
        ids. Read-only for callers, and the same objects for the table's life: the
        receive loop binds them once and tells an unsolicited message (in none of
        them, the common case of a push) without a call."""
        return self._asks, self._answered_ids, self._abandoned_ids

    def settle(self, ask_id: str) -> tuple[Reply, Pending[W] | None]:
        """Classify a reply for ``ask_id``; a first reply removes the ask."""
        if ask_id in self._asks:
            return _FIRST, self.first(ask_id)
        if ask_id in self._answered_ids:  # the dict itself: no __contains__ call
            return _DUPLICATE_REPLY
        if ask_id in self._abandoned_ids:
            self._abandoned.pop(ask_id)
            self._answered.add(ask_id)
            return _LATE_REPLY
        return _UNSOLICITED_REPLY

    def first(self, ask_id: str) -> Pending[W]:
        """:meth:`settle` for an id the caller saw pending (its first answer, ``FIRST``):
        the ask is removed and its id remembered as answered. (The receive loop's one
        call per answer: no classification, no tuple.)

        Raises:
            KeyError: no ask with this id is pending.
        """
        entry = self._asks.pop(ask_id)
        answered = self._answered_ids
        if ask_id in answered:  # an id used again: RecentIds.add refreshes it
            self._answered.add(ask_id)
        else:  # RecentIds.add, inline (a call less per answer)
            answered[ask_id] = None
            if len(answered) > self._answered.limit:
                answered.popitem(last=False)
        return entry

    def first_answers(
        self, messages: list[Any], kind: type[Any], waiters: list[W], answers: list[Any]
    ) -> int:
        """:meth:`first` for the answers a read opens with, in one call: each of
        ``messages`` from the first, while it is a ``kind`` whose ``id`` is pending.
        The waiters of those asks (those that have one) go to ``waiters``, and the
        messages to ``answers``, in order.

        Returns:
            How many of ``messages`` were taken (the first that was not, and those
            after it, are for the caller to classify: :meth:`settle`).
        """
        pop, answered = self._asks.pop, self._answered_ids
        limit = self._answered.limit
        taken = 0
        for message in messages:
            if type(message) is not kind:
                break
            ask_id = message.id
            entry = pop(ask_id, None)
            if entry is None:
                break
            if ask_id in answered:  # an id used again: refreshed (as first())
                self._answered.add(ask_id)
            else:
                answered[ask_id] = None
                if len(answered) > limit:
                    answered.popitem(last=False)
            if entry.waiter is not None:
                waiters.append(entry.waiter)
                answers.append(message)
            taken += 1
        return taken

    def answered(self, ask_id: str) -> bool:
        """Whether ``ask_id`` was answered recently (its late pieces are stale)."""
        return ask_id in self._answered_ids

    def discard(self, ask_id: str) -> Pending[W] | None:
        """Forget an ask that timed out or was cancelled; its first late reply is
        :attr:`Reply.LATE`, any later one a duplicate."""
        entry = self._asks.pop(ask_id, None)
        if entry is not None:
            self._abandoned.add(ask_id)
        return entry

    def on_wire(self) -> list[tuple[str, Pending[W]]]:
        """Asks written to the wire and not answered, in the order they were made."""
        return [(ask_id, e) for ask_id, e in self._asks.items() if e.on_wire]

    def drain_where(self, predicate: Callable[[Pending[W]], bool]) -> list[tuple[str, Pending[W]]]:
        """Remove and return the asks ``predicate`` selects, in the order made."""
        chosen = [(k, e) for k, e in self._asks.items() if predicate(e)]
        for ask_id, _ in chosen:
            del self._asks[ask_id]
            self._abandoned.add(ask_id)
        return chosen

    def drain(self) -> list[tuple[str, Pending[W]]]:
        """Remove and return every pending ask (to fail them all at once)."""
        items = list(self._asks.items())
        self._asks.clear()
        for ask_id, _ in items:
            self._abandoned.add(ask_id)
        return items
