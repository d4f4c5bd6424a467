"""The sans-I/O client: state, outbox, pending asks and retry budget in one place.

:class:`ClientCore` is driven by the asyncio layer with plain method calls (an
attempt started, the connection opened, a frame to send, a reply arrived, the
connection was lost) and answers with plain values (the new state, the next
frame to write, what a reply means, how long to wait). It performs no I/O and
reads no clock of its own, so every rule of the client is tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

from ..errors import NexusConnectionError, ProtocolError, RetriesExhausted
from .backoff import Reconnector
from .outbox import Outbox, Outgoing, Queued
from .pending import Pending, PendingTable
from .sending import OutboxRules
from .state import ConnectionState, Phase

#: Streamed pieces kept per ask ahead of a missing one (out-of-order ``response_chunk``
#: indices); more are dropped and reported once as a ``ProtocolError``.
MAX_EARLY_CHUNKS = 1_000

__all__ = ["MAX_EARLY_CHUNKS", "ClientCore", "Decision"]

W = TypeVar("W")
T = TypeVar("T")


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


class ClientCore(OutboxRules[W]):
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
        self._resent: Queued | None = None  # what resend() queued last (see there)

    # -- what the application sends -------------------------------------------------

    def submit(self, frame: bytes, key: str | None = None) -> None:
        """Queue a frame that is not tracked (anything but an ask).

        Raises:
            OutboxFull: nothing was queued.
        """
        self.outbox.put((frame, None, key))  # an Outgoing's fields: see Queued

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
        queued.append((frame, ask_id, None))  # an Outgoing's fields: see Queued
        entry = asks[ask_id] = Pending(frame, waiter)
        return entry

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
        while queued and queued[0][1] is not None and queued[0][1] not in self._asks:
            queued.popleft()
        return entry

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
        if self._resent is not None:  # gone, or goes again below as a copy: forgotten
            before = self._asks.get(self._resent[1])  # type: ignore[arg-type]
            if before is None or before.on_wire:
                self._resent = None
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
