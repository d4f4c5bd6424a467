"""How the outbox is written: :class:`OutboxRules`, the part of
:class:`~nexus_reactive.core.ClientCore` that takes frames out of the outbox for the
writer and puts them back (a write that failed or was not made, a rate limit's
refusal, asks no longer pending).

Each ask is either waiting in the outbox or handed to the writer (``on_wire``); these
rules keep that flag, and the attempts it counts (:attr:`Pending.sends`), true.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter
from typing import Generic, TypeVar

from .outbox import Outbox, Outgoing, Queued
from .pending import Pending, PendingTable

__all__ = ["OutboxRules"]

W = TypeVar("W")

_ask_id_of = itemgetter(1)  # an outbox item's ask id (see Queued), for map()


class OutboxRules(Generic[W]):
    """Taking frames out of the outbox and putting them back (a base of ClientCore,
    which sets these attributes up)."""

    outbox: Outbox
    pending: PendingTable[W]
    _queued: deque[Queued]  # the outbox's deque
    _asks: dict[str, Pending[W]]  # the pending asks, by id
    _resent: Queued | None  # what resend() queued last (see there)

    def next_outgoing(self) -> Queued | None:
        """The next frame to write, skipping asks settled or abandoned while queued."""
        # Outbox.pop and PendingTable.get, inline (two calls less per ask).
        queued, asks = self._queued, self._asks
        while queued:
            item = queued.popleft()
            if item[1] is None:
                return item
            entry = asks.get(item[1])
            if entry is not None:
                entry.on_wire = True
                return item
        return None

    def take_outgoing(self, limit: int) -> list[Queued]:
        """Up to ``limit`` frames to write at once, in order: :meth:`next_outgoing`
        repeated, in one call (with no Python code per frame but marking each ask)."""
        queued, asks = self._queued, self._asks
        taken: list[Queued] = []
        while queued and len(taken) < limit:
            room = limit - len(taken)
            if len(queued) <= room:
                chunk = list(queued)
                queued.clear()
            else:
                pop = queued.popleft
                chunk = [pop() for _ in range(room)]
            entries = list(map(asks.get, map(_ask_id_of, chunk)))  # None: not an ask, or gone
            if all(entries):  # asks only, all pending: the common case
                for entry in entries:
                    entry.on_wire = True  # type: ignore[union-attr]
                if not taken:
                    return chunk
                taken += chunk
                continue
            for item, entry in zip(chunk, entries):  # noqa: B905 (equal by construction)
                if entry is not None:
                    entry.on_wire = True
                    taken.append(item)
                elif item[1] is None:  # (else settled or abandoned while queued: dropped)
                    taken.append(item)
        return taken

    def take_window(self, limit: int, asks: int) -> list[Queued]:
        """:meth:`take_outgoing`, taking at most ``asks`` asks (the room a rate limit's
        :class:`~nexus_reactive.core.ratelimit.AskWindow` leaves): the frames before
        the first ask it cannot take (asks abandoned while queued take no room: dropped)."""
        queued, pending = self._queued, self._asks
        taken: list[Queued] = []
        while queued and len(taken) < limit:
            item = queued[0]
            if item[1] is None:
                taken.append(queued.popleft())
                continue
            entry = pending.get(item[1])
            if entry is None:  # abandoned meanwhile: dropped, as take_outgoing does
                queued.popleft()
                continue
            if asks == 0:
                break
            queued.popleft()
            entry.on_wire = True
            taken.append(item)
            asks -= 1
        return taken

    def resend(self, ask_id: str) -> bool:
        """Send a pending ask again first (the server asked us to retry it later).

        Asks refused one after another go again in that order: each goes right after
        the one refused before it while that one still waits in the outbox (one read
        may bring several refusals), else at the head. An ask not on the wire is in
        the outbox already (a server that says so again and again, before it went
        again): it is not queued a second time.

        Returns:
            Whether the ask was pending (and is now queued to go again).
        """
        entry = self.pending.get(ask_id)
        if entry is None:
            return False
        if entry.on_wire:  # (queued already: a server repeating itself queues it once)
            entry.on_wire = False
            entry.retries += 1
            item = Outgoing(entry.frame, ask_id)
            queued, at, resent = self._queued, 0, self._resent
            # After the one resent before while it waits (not on the wire, not settled;
            # by identity: an equal frame of a reused id is another ask), else the head.
            before = None if resent is None else self._asks.get(resent[1])  # type: ignore[arg-type]
            if before is not None and not before.on_wire:
                at = next((i + 1 for i, waiting in enumerate(queued) if waiting is resent), 0)
            queued.insert(at, item)
            self._resent = item
        return True

    def unsent(self, item: Queued) -> None:
        """A write of ``item`` failed: it goes back to the head of the outbox."""
        if item[1] is not None:
            entry = self.pending.get(item[1])
            if entry is None:
                return
            if not entry.on_wire:
                # Queued again already while this write was under way (a rate limit's
                # refusal, resend(); a new connection, opened()): not a second time.
                return
            entry.on_wire = False  # (the attempt counts: it may have reached the server)
            entry.retries += 1
        self.outbox.put_front((item,))

    def untake(self, items: list[Queued]) -> None:
        """Frames :meth:`take_outgoing` gave that were not written after all (nothing
        tried to: the socket could not take them without waiting): back at the head
        of the outbox, in order, as if never taken (no attempt counted)."""
        kept: list[Queued] = []
        for item in items:
            if item[1] is not None:
                entry = self.pending.get(item[1])
                if entry is None or not entry.on_wire:  # (gone, or queued again meanwhile)
                    continue
                entry.on_wire = False  # (and its attempt uncounted: see Pending.sends)
            kept.append(item)
        self.outbox.put_front(kept)

    def drop_unpending(self) -> None:
        """Drop the frames of asks no longer pending (failed at once: ``disconnect()``,
        a give-up): never to be sent, they would count as waiting (``outbox_depth``, a
        lazy connection's demand) until the next write."""
        queued, asks = self._queued, self._asks
        kept = [item for item in queued if item[1] is None or item[1] in asks]
        if len(kept) < len(queued):
            queued.clear()
            queued.extend(kept)
