"""Many stores on one shared connection: each answer goes to the store that asked.

A shared service (``use_websocket(share=True)``) carries the answers of every store
that uses it. Offering each message to every store, and letting each drop the
answers to other stores' asks, costs one call per store per message: 1,000 stores
made a flood 100 times slower. A :class:`Router` is the shared service's one sink
on ``messages`` instead. It keeps a dict from ask id to the store that asked, so
an answer (``response``, ``response_chunk``, ``error`` with an id) costs one look-up
whatever the number of stores, and goes to its store alone, or to none when no
store asked for it. Everything else (the server's unsolicited messages, an
``error`` about the whole connection) goes to every store.

The entry of an ask goes when its final answer (``response`` or ``error``) is
routed (a repeat of an answer never reaches ``messages``: the service drops it),
when its store closes, and when its store forgets the id (each store remembers a
bounded number of its own asks). An idle store is an entry in a dict here: no
task, no timer, no call per message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .messages import ErrorMessage, Message, ResponseChunkMessage, ResponseMessage

if TYPE_CHECKING:
    from .streams import Stream

__all__ = ["Router"]

log = logging.getLogger("nexus_reactive.store")

Sink = Callable[[Message], None]


class Router:
    """The one sink of a shared service's ``messages``; the stores behind it.

    Args:
        messages: the shared service's ``messages`` stream.
    """

    __slots__ = ("_detach", "_dirty", "_members", "_owners", "_sinks")

    def __init__(self, messages: Stream[Message]) -> None:
        #: The store (its sink) that asked, by ask id.
        self._owners: dict[str, Sink] = {}
        # Every store's sink, in joining order; _sinks is its snapshot for a broadcast,
        # rebuilt on the next broadcast after a change (joining 1,000 stores is O(1) each).
        self._members: dict[Sink, None] = {}
        self._sinks: tuple[Sink, ...] = ()
        self._dirty = False
        self._detach = messages.attach(self.on_message)

    def __len__(self) -> int:
        return len(self._members)

    @property
    def claimed(self) -> int:
        """How many ask ids are routed to a store now."""
        return len(self._owners)

    def join(self, sink: Sink) -> None:
        """Route to ``sink`` (a store's intake) its answers and every broadcast."""
        self._members[sink] = None
        self._dirty = True

    def leave(self, sink: Sink, claimed: Iterable[str]) -> None:
        """Route nothing more to ``sink``; ``claimed``: the ask ids it may own."""
        if self._members.pop(sink, False) is not False:
            self._dirty = True
        owners = self._owners
        for ask_id in claimed:
            if owners.get(ask_id) is sink:
                del owners[ask_id]

    def claim(self, ask_id: str, sink: Sink) -> None:
        """Route the answers to ``ask_id`` to ``sink`` (before the ask is sent)."""
        self._owners[ask_id] = sink

    def release(self, ask_id: str, sink: Sink) -> None:
        """``sink`` forgets ``ask_id``: its answers now go to no store."""
        if self._owners.get(ask_id) is sink:
            del self._owners[ask_id]

    def close(self) -> None:
        """Detach from the service (its last store closed)."""
        self._detach()
        self._members.clear()
        self._owners.clear()
        self._sinks = ()

    def on_message(self, message: Message) -> None:
        """Route one message: an answer to its store, anything else to every store."""
        kind = type(message)
        if kind is ResponseMessage or kind is ErrorMessage:
            ask_id = message.id
            if not ask_id:  # an error about the whole connection: everyone's
                self._broadcast(message)
                return
            # The final answer: its entry goes (repeats never reach messages).
            owner = self._owners.pop(ask_id, None)
        elif kind is ResponseChunkMessage:
            owner = self._owners.get(message.id)
        else:
            self._broadcast(message)
            return
        if owner is not None:  # else an answer to no store's ask: nobody's
            try:
                owner(message)
            except Exception:  # raised out of here, it would unsubscribe every store
                log.exception("a shared store failed to take a message")

    def _broadcast(self, message: Message) -> None:
        if self._dirty:
            self._sinks = tuple(self._members)
            self._dirty = False
        for sink in self._sinks:
            try:
                sink(message)
            except Exception:  # one store's failure never starves the others
                log.exception("a shared store failed to take a message")
