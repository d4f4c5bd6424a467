"""What one server app holds: its configuration, its open sockets and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .auth import ApiKeys
from .dedupe import ReplyCache
from .engine import Engine
from .ratelimit import RateLimiter
from .tracing import AskTracing
from .wire import Wire

if TYPE_CHECKING:
    from ..negotiation import FrameKeys

__all__ = ["KeyAuth", "ServerState", "ServerStats"]


@dataclass(slots=True)
class ServerStats:
    """Counters of one server app, for tests and monitoring.

    Attributes:
        connections_total: WebSocket connections accepted (upgraded) so far.
        connections_open: WebSocket connections open now.
        asks_received: valid ``ask`` messages received, repeats included.
        engine_calls: times the engine was called.
        asks_replayed: repeated ids answered without an engine call of their own:
            from a remembered reply, or by joining the computation in progress.
        chunks_sent: ``response_chunk`` pieces the engines produced (streaming
            engines; a piece sent to two joined connections counts once).
        auth_ok: connections that passed key-pair authentication.
        auth_failed: connections refused by key-pair authentication (a bad
            ``auth``, a key not allowed, or no ``auth`` in time).
        rate_limited: messages refused by the rate limit.
        abuse_closes: connections closed with 4429 for ignoring the rate limit.
        too_large: replies refused with ``too_large``: over the client's limit.
        frames_signed: connections that agreed on signed or sealed frames.
        frames_refused: connections closed because a frame failed its checks (4409)
            or the two sides did not agree on frames (4406).
        closes_sent: connections this server closed, by the close code it sent
            (4401, 4403, 4406, 4409, 4429, 1009, 1001 at shutdown...); a close the
            client started is not counted.
    """

    connections_total: int = 0
    connections_open: int = 0
    asks_received: int = 0
    engine_calls: int = 0
    asks_replayed: int = 0
    chunks_sent: int = 0
    auth_ok: int = 0
    auth_failed: int = 0
    rate_limited: int = 0
    abuse_closes: int = 0
    too_large: int = 0
    frames_signed: int = 0
    frames_refused: int = 0
    closes_sent: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyAuth:
    """Key-pair authentication settings: on if an app has one of these.

    Attributes:
        allowed: the lowercase hex public keys let in; ``None``: any key that
            signs its challenge.
        timeout: seconds a client has, after the challenge, to authenticate.
    """

    allowed: frozenset[str] | None
    timeout: float


@dataclass(slots=True, eq=False)
class ServerState:
    """Everything a connection handler needs from its app."""

    api_keys: ApiKeys
    engine: Engine
    replies: ReplyCache
    max_message_size: int
    max_query_length: int
    max_team_id_length: int
    heartbeat: float | None
    key_auth: KeyAuth | None
    rate_limiter: RateLimiter | None
    abuse_threshold: int
    #: The server's key for signed and sealed frames, if it has one.
    frames: FrameKeys | None = None
    tracing: AskTracing = field(default_factory=AskTracing)
    stats: ServerStats = field(default_factory=ServerStats)
    #: The open connections' write sides (a shutdown closes each).
    sockets: set[Wire] = field(default_factory=set)
