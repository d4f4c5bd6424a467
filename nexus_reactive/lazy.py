"""``lazy=True``: the connection opens when something needs it and closes when nothing
has for ``lazy_grace`` seconds.

:class:`LazyLink` counts the demand and performs what the pure rule
(:class:`~nexus_reactive.core.demand.LazyRule`) decides: it opens the connection
(``state.reason`` says "opened on demand"), keeps one grace timer while the
connection runs unneeded, and on its expiry closes the connection (``state.phase``
``IDLE``, with the reason). While idle there is no socket, no task and no timer.

It hears of demand from hooks the service wires once (:meth:`LazyLink.install`):
subscriptions to ``messages`` (:func:`~nexus_reactive.streams.count_subscribers`),
the asks' table and the outbox (each change), and the connection giving up.
Subscriptions may come and go on any thread: the counts change at once, under a
lock; the rule runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .core.demand import REASON_DEMAND, LazyRule, Step, idle_reason
from .errors import ConnectionClosed
from .streams import Stream, count_subscribers

if TYPE_CHECKING:
    from .asks import AskTracker
    from .connection import Connection
    from .core import ClientCore
    from .waiter import Waiter

__all__ = ["LazyLink"]

_running_loop = asyncio.events._get_running_loop


class LazyLink:
    """The demand on one lazy service's connection, and the grace timer.

    Args:
        grace: ``lazy_grace``, seconds.
        core: the pure client (its asks and outbox are the work).
        connection: opened and closed here.
        bind: the service's loop, bound to the running one if none yet
            (raises ``UsageError`` on another loop).
        bound: the service's loop, if bound.
    """

    def __init__(
        self,
        grace: float,
        core: ClientCore[Waiter],
        connection: Connection,
        bind: Callable[[], asyncio.AbstractEventLoop],
        bound: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        self._rule = LazyRule(grace)
        self._core = core
        self._connection = connection
        self._bind = bind
        self._bound = bound
        self._lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    def install(
        cls,
        grace: float,
        core: ClientCore[Waiter],
        connection: Connection,
        asks: AskTracker,
        messages: Stream[Any],
        bind: Callable[[], asyncio.AbstractEventLoop],
        bound: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> LazyLink:
        """A lazy link wired to the service's parts: their changes are its demand."""
        link = cls(grace, core, connection, bind, bound)
        count_subscribers(messages, link.hold)
        asks.changed = connection.sender.changed = link.check
        connection.gave_up = link.suspend
        return link

    @property
    def holders(self) -> int:
        """Subscribers that want data, and ``connect()`` calls being awaited."""
        return self._rule.holders

    @property
    def timing(self) -> bool:
        """Whether the grace timer runs (the connection runs, and nothing needs it)."""
        return self._timer is not None

    # -- demand, from any thread ---------------------------------------------------------

    def hold(self) -> Callable[[], None]:
        """Count one more user; returns its release (idempotent, any thread)."""
        with self._lock:
            self._rule.hold()
        self._kick()
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._rule.release()
            self._kick()

        return release

    def _kick(self) -> None:
        """Apply the rule on the loop's thread: now if this is it, else soon."""
        loop, running = self._bound(), _running_loop()
        if running is not None and (loop is None or loop is running):
            self.check()
        elif loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self.check)
        # Else no loop runs this service yet: counted, and applied at the first send,
        # ask or connect() on its loop.

    # -- on the loop's thread --------------------------------------------------------------

    def check(self) -> None:
        """The demand or the connection changed: open, or time the grace, as the rule says."""
        if self._closed:
            return
        core = self._core
        work = bool(len(core.pending) or len(core.outbox))
        if self._rule.step(work=work, running=self._connection.running) is Step.OPEN:
            if self._bound() is None and _running_loop() is None:
                return  # queued from a thread that runs no loop: opened once bound
            self._connection.start(self._bind(), REASON_DEMAND)
        self._keep_timer()

    def resume(self) -> None:
        """``connect()`` or ``reconnect()``: demand opens the connection again."""
        self._rule.suspended = False

    def restarted(self) -> None:
        """``reconnect()`` replaced the connection: if nothing needs it, the grace
        counts from now (a timer nearly due would close the new one at once)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.check()

    def suspend(self) -> None:
        """``disconnect()``, or the connection gave up: demand opens nothing until
        ``connect()`` or ``reconnect()``."""
        self._rule.suspended = True
        self.check()

    def close(self) -> None:
        """The service closes: no more timer, nothing opens."""
        self._closed = True
        self._rule.suspended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _keep_timer(self) -> None:
        armed = self._rule.armed
        if armed and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._rule.grace, self._expired)
        elif not armed and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self._closed:
            return
        core, connection = self._core, self._connection
        work = bool(len(core.pending) or len(core.outbox))
        if self._rule.expired(work=work, running=connection.running) is not Step.CLOSE:
            return
        grace = self._rule.grace
        connection.stop(
            ConnectionClosed(f"the connection closed after {grace:g}s unused (lazy=True)")
        )
        connection.publish(core.idle(idle_reason(grace)))
