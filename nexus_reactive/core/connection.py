"""The sans-I/O client: state, outbox, pending asks and retry budget in one place.

:class:`ClientCore` is driven by the asyncio layer with plain method calls (an
attempt started, the connection opened, a frame to send, a reply arrived, the
connection was lost) and answers with plain values (the new state, the next
frame to write, what a reply means, how long to wait). It performs no I/O and
reads no clock of its own, so every rule of the client is tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from operator import itemgetter
from typing import Generic, TypeVar

from ..errors import NexusConnectionError, ProtocolError, RetriesExhausted
from .backoff import Reconnector
from .outbox import Outbox, Outgoing
from .pending import Pending, PendingTable
from .state import ConnectionState, Phase

#: Streamed pieces kept per ask ahead of a missing one (out-of-order ``response_chunk``
#: indices); more are dropped and reported once as a ``ProtocolError``.
MAX_EARLY_CHUNKS = 1_000

__all__ = ["MAX_EARLY_CHUNKS", "ClientCore", "Decision"]

W = TypeVar("W")
T = TypeVar("T")

_ask_id_of = itemgetter(1)  # Outgoing.ask_id, for map()
# An ask's Outgoing made without the named tuple's Python-level __new__ (~65 ns an ask).
_tuple_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do after a connection attempt failed or a connection was lost.

    Attributes:
        delay: seconds to wait before the next attempt; ``None`` means give up.
        error: when giving up, the error to report (the fatal error itself, or a
            :class:`RetriesExhausted` wrapping the last one).
    """

    delay: float | None
    error: NexusConnectionError


class ClientCore(Generic[W]):
    """Every rule of the client, with no I/O.

    Args:
        outbox_limit: how many frames may wait for a connection.
        reconnector: the retry policy (backoff, budget, reset, hook).
        remember: how many answered (and how many abandoned) ids are kept to drop
            repeated answers (see :mod:`.recent`).
    """

    def __init__(
        self,
        *,
        outbox_limit: int = 10_000,
        reconnector: Reconnector | None = None,
        remember: int = 10_000,
    ) -> None:
        self.state = ConnectionState()
        self.outbox = Outbox(outbox_limit)
        self.pending: PendingTable[W] = PendingTable(remember)
        self.reconnector = reconnector if reconnector is not None else Reconnector()
        # reply() is the table's settle(): bound once, one call less per message.
        self.reply = self.pending.settle
        self._asks = self.pending.lookups()[0]  # read-only: ``in`` without __contains__
        self._queued = self.outbox.items  # the outbox's deque: no property call per ask
        self._reason: str | None = None  # why the next attempt starts, if not a failure
        self._resent: Outgoing | None = None  # what resend() queued last (see there)

    # -- what the application sends -------------------------------------------------

    def submit(self, frame: bytes, key: str | None = None) -> None:
        """Queue a frame that is not tracked (anything but an ask).

        Raises:
            OutboxFull: nothing was queued.
        """
        self.outbox.put(Outgoing(frame, None, key))

    def restore(self, items: list[tuple[str, bool, bytes]]) -> None:
        """Queue what a journal held from a previous life, in order, past the limit:
        those messages were accepted already. Asks are tracked again (no waiter)."""
        for key, is_ask, frame in items:
            if is_ask:
                if key not in self.pending:
                    self.pending.add(key, frame)
                    self.outbox.put_accepted(Outgoing(frame, key))
            else:
                self.outbox.put_accepted(Outgoing(frame, None, key))

    def submit_ask(self, ask_id: str, frame: bytes, waiter: W | None = None) -> Pending[W]:
        """Queue an ask and track it until its answer.

        Raises:
            OutboxFull: nothing was queued or tracked.
            ProtocolError: an ask with this id is pending already.
        """
        asks = self._asks
        if ask_id in asks:
            raise ProtocolError(
                f"an ask with id {ask_id!r} is already waiting for its answer; "
                "give every ask a fresh id (new_id())"
            )
        # Outbox.put and PendingTable.add, inline (two calls less per ask).
        queued = self._queued
        if len(queued) >= self.outbox.limit:
            self.outbox.put(Outgoing(frame, ask_id))  # raises OutboxFull
        queued.append(_tuple_new(Outgoing, (frame, ask_id, None)))
        entry = asks[ask_id] = Pending(frame, waiter)
        return entry

    def next_outgoing(self) -> Outgoing | None:
        """The next frame to write, skipping asks settled or abandoned while queued."""
        # Outbox.pop and PendingTable.get, inline (two calls less per ask).
        queued, asks = self._queued, self._asks
        while queued:
            item = queued.popleft()
            if item.ask_id is None:
                return item
            entry = asks.get(item.ask_id)
            if entry is not None:
                entry.on_wire = True
                return item
        return None

    def take_outgoing(self, limit: int) -> list[Outgoing]:
        """Up to ``limit`` frames to write at once, in order: :meth:`next_outgoing`
        repeated, in one call (with no Python code per frame but marking each ask)."""
        queued, asks = self._queued, self._asks
        taken: list[Outgoing] = []
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
                elif item.ask_id is None:  # (else settled or abandoned while queued: dropped)
                    taken.append(item)
        return taken

    def take_window(self, limit: int, asks: int) -> list[Outgoing]:
        """:meth:`take_outgoing`, taking at most ``asks`` asks (the room a rate limit's
        :class:`~nexus_reactive.core.ratelimit.AskWindow` leaves): the frames before
        the first ask it cannot take (asks abandoned while queued take no room: dropped)."""
        queued, pending = self._queued, self._asks
        taken: list[Outgoing] = []
        while queued and len(taken) < limit:
            item = queued[0]
            if item.ask_id is None:
                taken.append(queued.popleft())
                continue
            entry = pending.get(item.ask_id)
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
            before = None if resent is None else self._asks.get(resent.ask_id)  # type: ignore[arg-type]
            if before is not None and not before.on_wire:
                at = next((i + 1 for i, waiting in enumerate(queued) if waiting is resent), 0)
            queued.insert(at, item)
            self._resent = item
        return True

    def unsent(self, item: Outgoing) -> None:
        """A write of ``item`` failed: it goes back to the head of the outbox."""
        if item.ask_id is not None:
            entry = self.pending.get(item.ask_id)
            if entry is None:
                return
            if entry.on_wire:  # (the attempt counts: it may have reached the server)
                entry.on_wire = False
                entry.retries += 1
        self.outbox.put_front((item,))

    def untake(self, items: list[Outgoing]) -> None:
        """Frames :meth:`take_outgoing` gave that were not written after all (nothing
        tried to: the socket could not take them without waiting): back at the head
        of the outbox, in order, as if never taken (no attempt counted)."""
        kept: list[Outgoing] = []
        for item in items:
            if item.ask_id is not None:
                entry = self.pending.get(item.ask_id)
                if entry is None:
                    continue
                entry.on_wire = False  # (and its attempt uncounted: see Pending.sends)
            kept.append(item)
        self.outbox.put_front(kept)

    # -- what the server sends -----------------------------------------------------

    def chunk(self, ask_id: str, index: int, piece: T) -> list[T]:
        """Order a streamed piece of the answer to ``ask_id``.

        Returns:
            The pieces now deliverable in order: none if ``index`` was delivered
            already (a repeat, e.g. a stream restarted after a reconnect) or comes
            early (it waits for the gap), several once a gap fills. Pieces for an id
            no ask of ours waits for are passed through as they come.

        Raises:
            ProtocolError: (once per ask) more than ``MAX_EARLY_CHUNKS`` pieces came
                ahead of a gap that never fills: the excess is dropped, so a server
                sending indices 1..N without 0 cannot grow memory without bound.
        """
        entry = self.pending.get(ask_id)
        if entry is None:
            return [] if self.pending.answered(ask_id) else [piece]
        if index < entry.next_chunk:
            return []
        if index > entry.next_chunk:
            if entry.early is None:
                entry.early = {}
            if len(entry.early) >= MAX_EARLY_CHUNKS and index not in entry.early:
                entry.early_dropped += 1
                if entry.early_dropped == 1:
                    raise ProtocolError(
                        f"the answer to {ask_id} streamed more than {MAX_EARLY_CHUNKS} "
                        f"pieces ahead of the missing piece {entry.next_chunk}: the "
                        "excess is dropped"
                    )
                return []
            entry.early.setdefault(index, piece)
            return []
        ready = [piece]
        entry.next_chunk += 1
        early = entry.early
        while early and entry.next_chunk in early:
            ready.append(early.pop(entry.next_chunk))
            entry.next_chunk += 1
        return ready

    def abandon(self, ask_id: str) -> Pending[W] | None:
        """Stop tracking an ask (it timed out, or its caller gave up).

        Its frame, if a write put it back at the head of the outbox (cancelled before
        the transport took it), leaves the outbox too: it would never be sent, and
        would count as waiting (``outbox_depth``, a lazy connection's demand) until
        the next write.
        """
        entry = self.pending.discard(ask_id)
        queued = self.outbox.items
        while queued and queued[0].ask_id is not None and queued[0].ask_id not in self._asks:
            queued.popleft()
        return entry

    def drop_unpending(self) -> None:
        """Drop the frames of asks no longer pending (failed at once: ``disconnect()``,
        a give-up): never to be sent, they would count as waiting (``outbox_depth``, a
        lazy connection's demand) until the next write."""
        queued, asks = self._queued, self._asks
        kept = [item for item in queued if item.ask_id is None or item.ask_id in asks]
        if len(kept) < len(queued):
            queued.clear()
            queued.extend(kept)

    # -- the connection's life -----------------------------------------------------

    def restart(self, reason: str | None = None) -> ConnectionState:
        """A fresh budget: ``connect()`` on a stopped or failed client, ``reconnect()``,
        or demand opening a lazy one.

        With a ``reason`` (``reconnect()``, demand), the next attempt shows it in
        ``state.reason`` instead of the last failure; the state returned is that
        attempt's already, to publish at once.
        """
        self.reconnector.retries = 0
        self.reconnector.attempts = 0
        self._reason = reason
        if reason is not None:
            self._set(ConnectionState(phase=Phase.CONNECTING, reason=reason))
        return self.state

    def attempt(self) -> ConnectionState:
        """An attempt to connect starts now."""
        self.reconnector.attempt_started()
        reason, self._reason = self._reason, None
        if reason is not None:
            state = ConnectionState(
                phase=Phase.CONNECTING, attempt=self.reconnector.retries, reason=reason
            )
            return self._set(state)
        return self._set(
            replace(
                self.state,
                phase=Phase.CONNECTING,
                attempt=self.reconnector.retries,
                retry_in=None,
                reason=None,
            )
        )

    def authenticating(self) -> ConnectionState:
        """The upgrade succeeded; the server's challenge is being answered."""
        return self._set(replace(self.state, phase=Phase.AUTHENTICATING))

    def opened(self, subprotocol: str | None = None) -> ConnectionState:
        """The connection is open (and authenticated): messages may flow.

        ``subprotocol`` is the one the server chose, if subprotocols were offered.

        Asks that were on the wire of a previous connection without an answer go
        back to the head of the outbox, in the order they were made, with their
        original ids: the server de-duplicates them.
        """
        self.reconnector.opened()
        resend = self.pending.on_wire()
        for _, entry in resend:
            entry.on_wire = False
            entry.retries += 1
        self.outbox.put_front(Outgoing(entry.frame, ask_id) for ask_id, entry in resend)
        return self._set(ConnectionState(phase=Phase.CONNECTED, subprotocol=subprotocol))

    def lost(self, error: NexusConnectionError) -> Decision:
        """An attempt failed or a connection ended with ``error``: retry or give up."""
        delay = self.reconnector.next_delay(error)
        if delay is None:
            final: NexusConnectionError = error
            if self.reconnector.exhausted:
                final = RetriesExhausted(self.reconnector.attempts, error)
            self._set(
                ConnectionState(
                    phase=Phase.FAILED,
                    error=str(final),
                    attempt=self.reconnector.retries,
                    close_code=error.close_code,
                )
            )
            return Decision(None, final)
        self._set(
            ConnectionState(
                phase=Phase.WAITING,
                error=str(error),
                attempt=self.reconnector.retries,
                retry_in=delay,
                close_code=error.close_code,
            )
        )
        return Decision(delay, error)

    def stopped(self) -> ConnectionState:
        """``disconnect()``: no more attempts until the next ``connect()``."""
        self.reconnector.retries = 0
        return self._set(
            replace(
                self.state, phase=Phase.DISCONNECTED, retry_in=None, subprotocol=None, reason=None
            )
        )

    def idle(self, reason: str) -> ConnectionState:
        """``lazy=True``: nothing needs the connection, so none is open (not an error)."""
        self.reconnector.retries = 0
        self._reason = None
        return self._set(ConnectionState(phase=Phase.IDLE, reason=reason))

    def closed(self) -> ConnectionState:
        """``close()``: the service is finished."""
        return self._set(
            replace(self.state, phase=Phase.CLOSED, retry_in=None, subprotocol=None, reason=None)
        )

    def _set(self, state: ConnectionState) -> ConnectionState:
        self.state = state
        return state
