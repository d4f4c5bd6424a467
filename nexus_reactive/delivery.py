"""Who hears of a message: :class:`Delivery`, the ``messages`` stream and the
``on_message`` handlers by type (the base of :class:`~nexus_reactive.inbound.Receiver`,
which decides what each frame means before it is delivered)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .messages import Message
from .streams import Publisher

__all__ = ["Delivery", "Handler"]

log = logging.getLogger("nexus_reactive.service")

#: An ``on_message`` handler.
Handler = Callable[[Any], None]


class Delivery:
    """The ``messages`` publisher and the ``on_message`` handlers, and delivery to them:
    one message, or a read's run of them in one call while no handler listens."""

    __slots__ = ("_emit", "_emit_all", "handlers", "messages")

    def __init__(self) -> None:
        self.messages: Publisher[Message] = Publisher("messages")
        #: ``on_message`` handlers by message type, swapped in atomically.
        self.handlers: dict[str, tuple[Handler, ...]] = {}
        # Bound once: one attribute load per call on the hot path.
        self._emit = self.messages.emit
        self._emit_all = self.messages.emit_all

    def add_handler(self, type: str, handler: Handler) -> Callable[[], None]:
        """Call ``handler`` with every message of ``type``; return its unsubscriber.

        Any thread may call either: the handlers are swapped in atomically.
        """
        registry = self.handlers
        registry[type] = (*registry.get(type, ()), handler)

        def unsubscribe() -> None:
            left = tuple(h for h in registry.get(type, ()) if h is not handler)
            if left:
                registry[type] = left
            else:  # no key left behind: an empty registry is the receiver's fast path
                registry.pop(type, None)

        return unsubscribe

    def deliver(self, message: Message) -> None:
        """Emit on ``messages`` and call the handlers of its type."""
        self._emit(message)
        if self.handlers:
            self._handle(message)

    def _handle(self, message: Message) -> None:
        handlers = self.handlers.get(message.type)
        if handlers:
            for handler in handlers:
                try:
                    handler(message)
                except Exception:
                    log.exception("an on_message handler for %r raised", message.type)

    def _deliver_run(self, run: list[Message]) -> None:
        """:meth:`deliver` each of ``run``, in one call while no handler listens."""
        if not self.handlers:
            done = self._emit_all(run, self.handlers)
            if not self.handlers:
                return
            # A subscriber added a handler while run[done - 1] was delivered (the last
            # one, too): it hears of that message, as when delivered alone; the rest
            # go one by one.
            self._handle(run[done - 1])
            run = run[done:]
        for message in run:
            self.deliver(message)
