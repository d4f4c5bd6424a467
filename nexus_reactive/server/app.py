"""The reference server as an :class:`aiohttp.web.Application`.

:func:`create_app` wires the pieces: API keys (:mod:`.auth`), the engine
(:mod:`.engine`), the reply cache (:mod:`.dedupe`) and the connection handler
(:mod:`.connection`). Everything the app holds is reachable through typed
:class:`aiohttp.web.AppKey` s, e.g. ``app[STATS_KEY].engine_calls``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiohttp import WSCloseCode, web

from .auth import ApiKeys
from .connection import handle_upgrade
from .dedupe import ReplyCache
from .engine import EchoEngine, Engine
from .state import ServerState, ServerStats

__all__ = ["STATE_KEY", "STATS_KEY", "create_app"]

#: The app's counters (:class:`ServerStats`).
STATS_KEY = web.AppKey("nexus_stats", ServerStats)
#: Everything the app holds (:class:`ServerState`): engine, reply cache, open sockets.
STATE_KEY = web.AppKey("nexus_state", ServerState)

#: PROTOCOL.md: a server remembers at least the last 10,000 ask ids or 5 minutes.
DEFAULT_DEDUPE_SIZE = 10_000
DEFAULT_DEDUPE_TTL = 300.0
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


def create_app(
    *,
    api_keys: str | Iterable[str] | None = None,
    engine: Engine | None = None,
    path: str = "/",
    dedupe_size: int = DEFAULT_DEDUPE_SIZE,
    dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    heartbeat: float | None = None,
) -> web.Application:
    """Build a Nexus server application.

    Args:
        api_keys: the accepted ``x-api-key`` values: one, several, or ``None`` to
            read the ``NEXUS_API_KEY`` environment variable.
        engine: what answers asks (sync or async, see :class:`Engine`);
            :class:`EchoEngine` by default.
        path: the URL path that accepts WebSocket upgrades.
        dedupe_size: how many ask replies to remember for repeated ids.
        dedupe_ttl: seconds an unused remembered reply is kept.
        max_message_size: the largest frame accepted, in bytes; a bigger one
            closes the connection with code 1009.
        heartbeat: seconds between server pings; a client that does not answer
            in half that time is dropped. ``None``: no pings.

    Returns:
        The application, ready for :class:`aiohttp.web.AppRunner` or the
        ``aiohttp_server`` test fixture.

    Raises:
        ConfigError: no API key was given and ``NEXUS_API_KEY`` is not set, or a
            key is empty.
        ValueError: a size, time or path is out of range.
    """
    keys = ApiKeys(api_keys)
    if max_message_size < 1:
        raise ValueError(f"max_message_size must be positive, got {max_message_size}")
    if heartbeat is not None and heartbeat <= 0:
        raise ValueError(f"heartbeat must be positive or None, got {heartbeat}")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    state = ServerState(
        api_keys=keys,
        engine=engine if engine is not None else EchoEngine(),
        replies=ReplyCache(dedupe_size, dedupe_ttl),
        max_message_size=max_message_size,
        heartbeat=heartbeat,
    )
    app = web.Application()
    app[STATE_KEY] = state
    app[STATS_KEY] = state.stats

    async def upgrade(request: web.Request) -> web.StreamResponse:
        return await handle_upgrade(request, state)

    app.router.add_get(path, upgrade)
    app.on_shutdown.append(_close_sockets)
    return app


async def _close_sockets(app: web.Application) -> None:
    """Close every open WebSocket with 1001 (going away): clients reconnect elsewhere."""
    sockets = list(app[STATE_KEY].sockets)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets),
        return_exceptions=True,
    )
