"""What one server app holds: its configuration, its open sockets and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from .auth import ApiKeys
from .dedupe import ReplyCache
from .engine import Engine

__all__ = ["ServerState", "ServerStats"]


@dataclass(slots=True)
class ServerStats:
    """Counters of one server app, for tests and monitoring.

    Attributes:
        connections_total: WebSocket connections accepted (upgraded) so far.
        connections_open: WebSocket connections open now.
        asks_received: valid ``ask`` messages received, repeats included.
        engine_calls: times the engine was called.
        asks_replayed: asks answered with a remembered reply (repeated ids).
    """

    connections_total: int = 0
    connections_open: int = 0
    asks_received: int = 0
    engine_calls: int = 0
    asks_replayed: int = 0


@dataclass(slots=True, eq=False)
class ServerState:
    """Everything a connection handler needs from its app."""

    api_keys: ApiKeys
    engine: Engine
    replies: ReplyCache
    max_message_size: int
    heartbeat: float | None
    stats: ServerStats = field(default_factory=ServerStats)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
