"""Connection state: one enum of phases and an immutable snapshot for observers."""

from __future__ import annotations

import enum
import html
from dataclasses import dataclass

__all__ = ["ConnectionState", "Phase"]


class Phase(enum.Enum):
    """Where the connection is in its life."""

    DISCONNECTED = "disconnected"  # not started, or stopped by disconnect()
    IDLE = "idle"  # lazy=True: nothing needs the link, so none is open; opens on demand
    CONNECTING = "connecting"  # an attempt is under way (TCP, TLS, upgrade)
    AUTHENTICATING = "authenticating"  # upgraded; answering the server's challenge
    CONNECTED = "connected"  # open (and authenticated): messages flow
    WAITING = "waiting"  # backing off before the next attempt
    FAILED = "failed"  # gave up: a fatal error, or attempts ran out
    CLOSED = "closed"  # close() was called; the service is finished


# Module constants: ``Phase.CONNECTED`` is a lookup on the enum's class (~60 ns on
# CPython 3.11), and ``connected`` is read on every ask queued.
_CONNECTED = Phase.CONNECTED
_CONNECTING = Phase.CONNECTING
_AUTHENTICATING = Phase.AUTHENTICATING
_WAITING = Phase.WAITING
_IDLE = Phase.IDLE
_FAILED = Phase.FAILED


@dataclass(frozen=True, slots=True)
class ConnectionState:
    """An immutable snapshot of the connection, as the TypeScript client's ``ConnectionState``.

    Attributes:
        phase: where the connection is (see :class:`Phase`).
        error: why the last attempt or connection failed, in words; ``None`` once
            connected again.
        attempt: 0 for the first attempt, then the number of the retry under way
            or about to start.
        retry_in: while waiting, the delay in seconds before the next attempt.
        close_code: the WebSocket close code that ended the last connection.
        subprotocol: while connected, the subprotocol the server chose from
            ``subprotocols=[...]``; ``None`` when none were offered, or not connected.
        reason: why the client is in this phase when no failure says it: an
            attempt started by ``reconnect()`` or by demand (``lazy=True``), or a
            lazy connection idle; ``None`` otherwise (then ``error`` says why).
    """

    phase: Phase = Phase.DISCONNECTED
    error: str | None = None
    attempt: int = 0
    retry_in: float | None = None
    close_code: int | None = None
    subprotocol: str | None = None
    reason: str | None = None

    @property
    def connected(self) -> bool:
        """Open (and authenticated): sends go out at once."""
        return self.phase is _CONNECTED

    @property
    def connecting(self) -> bool:
        """An attempt is under way, including its authentication step."""
        return self.phase is _CONNECTING or self.phase is _AUTHENTICATING

    @property
    def authenticating(self) -> bool:
        """Upgraded, and answering the server's key-pair challenge."""
        return self.phase is _AUTHENTICATING

    @property
    def reconnecting(self) -> bool:
        """In a retry cycle: waiting for, or making, an attempt after a failure."""
        return self.phase is _WAITING or (self.connecting and self.attempt > 0)

    @property
    def idle(self) -> bool:
        """``lazy=True`` and nothing needs the link: none is open; it opens on demand."""
        return self.phase is _IDLE

    @property
    def failed(self) -> bool:
        """Gave up for good; ``error`` says why."""
        return self.phase is _FAILED

    def _repr_html_(self) -> str:
        """One line for notebooks: a coloured dot and the state in words."""
        colour = (
            "#2e7d32"
            if self.connected
            else "#c62828"
            if self.failed
            else "#f9a825"
            if self.connecting or self.reconnecting
            else "#757575"
        )
        label = "Connected" if self.connected else self.phase.value.capitalize()
        detail = html.escape(str(self))
        return (
            f'<span style="color:{colour}">&#9679;</span> <b>{label}</b> '
            f'<span style="color:#666">({detail})</span>'
        )

    def __str__(self) -> str:
        parts = [self.phase.value]
        if self.attempt:
            parts.append(f"attempt {self.attempt}")
        if self.retry_in is not None:
            parts.append(f"retry in {self.retry_in:.2f}s")
        if self.close_code is not None:
            parts.append(f"close code {self.close_code}")
        if self.subprotocol is not None:
            parts.append(f"subprotocol {self.subprotocol}")
        if self.reason:
            parts.append(self.reason)
        if self.error:
            parts.append(f"error: {self.error}")
        return ", ".join(parts)
