"""When a lazy connection (``lazy=True``) should be open: the pure rule.

A lazy client opens its connection when something needs it and closes it when
nothing has needed it for ``lazy_grace`` seconds. What needs it:

- a **holder**: a subscriber that wants data from the server (``messages``, the
  typed streams, ``on_message`` handlers, a store's ``messages``), or a
  ``connect()`` being awaited;
- **work**: an ask waiting for its answer, or a message waiting in the outbox.

Watching the connection (``state``, ``errors``, ``outbox_depth``) is not a need:
a status line subscribes to ``state`` from the start, and would otherwise keep open
the very connection it reports as idle.

Demand does not undo a decision: after ``disconnect()``, or once the client gave
up (a fatal error, attempts exhausted), the rule is **suspended** and nothing opens
until ``connect()`` or ``reconnect()``. :class:`LazyRule` holds the counts and says
what to do (:class:`Step`); the asyncio layer (:mod:`nexus_reactive.lazy`) does it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "REASON_DEMAND",
    "REASON_RECONNECT",
    "REASON_UNUSED",
    "LazyRule",
    "Step",
    "idle_reason",
]

#: ``state.reason`` of an attempt that ``reconnect()`` started.
REASON_RECONNECT = "reconnect() was called"
#: ``state.reason`` of an attempt that demand started (``lazy=True``).
REASON_DEMAND = "opened on demand (lazy=True)"
#: ``state.reason`` of a lazy client that has not been used yet.
REASON_UNUSED = "lazy=True: connects on the first messages subscriber, send, ask or connect()"


def idle_reason(grace: float) -> str:
    """``state.reason`` of a lazy connection closed for want of use."""
    return (
        f"lazy=True: closed after {grace:g}s without a messages subscriber, ask or queued message"
    )


class Step(enum.Enum):
    """What the asyncio layer does next (besides keeping the grace timer as
    :attr:`LazyRule.armed` says)."""

    NOTHING = "nothing"
    OPEN = "open"  # start the connection now
    CLOSE = "close"  # close the connection: it is idle


@dataclass(slots=True)
class LazyRule:
    """The counts and the rule of one lazy client.

    Attributes:
        grace: seconds without demand before an open connection closes.
        holders: subscribers that want data, and ``connect()`` calls awaited.
        suspended: ``disconnect()``, ``close()`` or a failure given up on: demand
            does not open the connection (``connect()`` and ``reconnect()`` resume).
        armed: whether the grace timer should run: the connection runs and nothing
            needs it. A timer that runs already keeps running (the grace counts from
            when the demand ended, not from the last check).
    """

    grace: float
    holders: int = 0
    suspended: bool = False
    armed: bool = False

    def hold(self) -> None:
        self.holders += 1

    def release(self) -> None:
        if self.holders <= 0:
            raise ValueError("released more holders than were taken")
        self.holders -= 1

    def step(self, *, work: bool, running: bool) -> Step:
        """What to do now that the demand or the connection changed.

        Args:
            work: asks wait for answers, or messages wait in the outbox.
            running: the connection is open, opening, or waiting to retry.
        """
        needed = bool(self.holders or work)
        self.armed = running and not needed and not self.suspended
        if needed and not running and not self.suspended:
            return Step.OPEN
        return Step.NOTHING

    def expired(self, *, work: bool, running: bool) -> Step:
        """The grace timer fired: close, unless something needs the connection again."""
        self.armed = False
        if self.suspended or not running or self.holders or work:
            return Step.NOTHING
        return Step.CLOSE
