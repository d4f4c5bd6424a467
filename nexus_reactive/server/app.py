"""The reference server as an :class:`aiohttp.web.Application`.

:func:`create_app` wires the pieces: API keys (:mod:`.auth`), the engine
(:mod:`.engine`), the reply cache (:mod:`.dedupe`), key-pair authentication
(:mod:`.keyauth`), the rate limiter (:mod:`.ratelimit`) and the connection handler
(:mod:`.connection`). Everything the app holds is reachable through typed
:class:`aiohttp.web.AppKey` s, e.g. ``app[STATS_KEY].engine_calls``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiohttp import WSCloseCode, web

from ..errors import ConfigError
from ..framing import MODES, FramesMode
from ..negotiation import FrameKeys
from ..signing import SigningKeySource
from ..telemetry import Telemetry
from .auth import ApiKeys
from .connection import handle_upgrade
from .dedupe import ReplyCache
from .engine import EchoEngine, Engine
from .keyauth import normalize_pubkeys
from .ratelimit import RateLimiter
from .state import KeyAuth, ServerState, ServerStats
from .tracing import AskTracing

__all__ = ["STATE_KEY", "STATS_KEY", "create_app"]

#: The app's counters (:class:`ServerStats`).
STATS_KEY = web.AppKey("nexus_stats", ServerStats)
#: Everything the app holds (:class:`ServerState`): engine, reply cache, open sockets.
STATE_KEY = web.AppKey("nexus_state", ServerState)

#: Replies remembered for repeated ask ids: how many, and for how long (docs/protocol.md).
DEFAULT_DEDUPE_SIZE = 10_000
DEFAULT_DEDUPE_TTL = 300.0
#: Seconds an answer nobody waits for is still computed, for a client that reconnects.
DEFAULT_ABANDON_AFTER = 30.0
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_QUERY_LENGTH = 16_384
DEFAULT_MAX_TEAM_ID_LENGTH = 128
DEFAULT_AUTH_TIMEOUT = 10.0
DEFAULT_ABUSE_THRESHOLD = 50


def create_app(
    *,
    api_keys: str | Iterable[str] | None = None,
    engine: Engine | None = None,
    path: str = "/",
    dedupe_size: int = DEFAULT_DEDUPE_SIZE,
    dedupe_ttl: float = DEFAULT_DEDUPE_TTL,
    abandon_after: float = DEFAULT_ABANDON_AFTER,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    max_team_id_length: int = DEFAULT_MAX_TEAM_ID_LENGTH,
    heartbeat: float | None = None,
    require_signature: bool = False,
    allowed_pubkeys: Iterable[str] | None = None,
    auth_timeout: float = DEFAULT_AUTH_TIMEOUT,
    signing_key: SigningKeySource | None = None,
    require_frames: FramesMode | None = None,
    rate_limit: float | None = None,
    rate_burst: int | None = None,
    abuse_threshold: int = DEFAULT_ABUSE_THRESHOLD,
    clock: Callable[[], float] = time.monotonic,
    telemetry: bool | Telemetry | None = None,
) -> web.Application:
    """Build a Nexus server application.

    Args:
        api_keys: the accepted ``x-api-key`` values: one, several, or ``None`` to
            read the ``NEXUS_API_KEY`` environment variable.
        engine: what answers asks (sync, async or streaming, see :class:`Engine`);
            :class:`EchoEngine` by default.
        path: the URL path that accepts WebSocket upgrades.
        dedupe_size: how many ask replies to remember for repeated ids.
        dedupe_ttl: seconds an unused remembered reply is kept.
        abandon_after: seconds an answer goes on being computed after the last
            connection waiting for it closed, so that a client that reconnects and
            sends the ask again joins it instead of starting the engine again; then
            the engine's task is cancelled. 0: cancel at once.
        max_message_size: the largest frame accepted, in bytes, also after
            permessage-deflate decompression; a bigger one closes the connection
            with code 1009. Also the largest reply sent to a client that does not
            announce its own limit (``x-max-message-size``); a bigger reply is
            refused with ``error`` ``too_large``.
        max_query_length: the longest ``query`` accepted, in characters; a longer
            one gets ``error`` ``bad_request``.
        max_team_id_length: the longest ``team_id`` accepted, in characters.
        heartbeat: seconds between server pings; a client that does not answer
            in half that time is dropped. ``None``: no pings.
        require_signature: require key-pair authentication: send a ``challenge``
            first and serve nothing until a valid signed ``auth`` comes back.
        allowed_pubkeys: the public keys (64 hex digits each) let in; giving any
            implies ``require_signature``. ``None``: any key that signs its
            challenge. A valid signature by another key is refused with close 4403.
        auth_timeout: seconds a client has to authenticate after the challenge;
            then the connection is closed with 4401.
        signing_key: the server's own Ed25519 private key (forms as for the client's
            ``signing_key``): it signs frames, and with the ``encryption`` extra
            decrypts them, for clients that pin its public key. Implies
            ``require_signature``: frames are checked against the client's key.
        require_frames: ``"signed"`` or ``"sealed"``: refuse a client that does not
            ask for at least that (``error`` ``frames_refused``, close 4406). Needs
            ``signing_key``.
        rate_limit: messages per second allowed per API key, over all of that
            key's connections; a message over it gets ``error`` ``rate_limited``
            with ``retry_after`` and is not processed. ``None``: no limit.
        rate_burst: messages a key may send at once before ``rate_limit``
            applies; ``None``: ``max(1, ceil(rate_limit))``.
        abuse_threshold: a connection that sends more than this many rate-limited
            messages in a row gets a connection-wide ``rate_limited`` error and is
            closed with 4429 (reason ``retry_after=<seconds>``).
        clock: the monotonic clock of the rate limiter and the reply cache, in
            seconds; tests inject a fake one.
        telemetry: where the span of an ask that carries W3C trace context goes (a
            child of the client's span): ``None``, OpenTelemetry's global tracer
            provider if its API is installed (loaded at the first such ask); ``True``
            likewise, checked now; a :class:`~nexus_reactive.Telemetry` names a
            provider; ``False``: never traced.

    Returns:
        The application, ready for :class:`aiohttp.web.AppRunner` or the
        ``aiohttp_server`` test fixture.

    Raises:
        ConfigError: no API key was given and ``NEXUS_API_KEY`` is not set, a key
            is empty, an allowed public key is not 64 hex digits, the signing key
            cannot be read, or ``telemetry`` is set and OpenTelemetry's API is not
            installed.
        ValueError: a size, time, rate or path is out of range.
    """
    keys = ApiKeys(api_keys)
    for name, value in (
        ("max_message_size", max_message_size),
        ("max_query_length", max_query_length),
        ("max_team_id_length", max_team_id_length),
        ("abuse_threshold", abuse_threshold),
    ):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    for name, seconds in (("heartbeat", heartbeat), ("rate_limit", rate_limit)):
        if seconds is not None and not seconds > 0:
            raise ValueError(f"{name} must be positive or None, got {seconds}")
    if not auth_timeout > 0:
        raise ValueError(f"auth_timeout must be positive, got {auth_timeout}")
    if rate_burst is not None and rate_limit is None:
        raise ValueError("rate_burst needs rate_limit")
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    allowed = normalize_pubkeys(allowed_pubkeys)
    frames = _frame_keys(signing_key, require_frames)
    key_auth = (
        KeyAuth(allowed=allowed, timeout=auth_timeout)
        if require_signature or allowed is not None or frames is not None
        else None
    )
    state = ServerState(
        api_keys=keys,
        engine=engine if engine is not None else EchoEngine(),
        replies=ReplyCache(dedupe_size, dedupe_ttl, abandon_after=abandon_after, clock=clock),
        max_message_size=max_message_size,
        max_query_length=max_query_length,
        max_team_id_length=max_team_id_length,
        heartbeat=heartbeat,
        key_auth=key_auth,
        rate_limiter=(
            RateLimiter(rate_limit, rate_burst, clock=clock) if rate_limit is not None else None
        ),
        abuse_threshold=abuse_threshold,
        frames=frames,
        tracing=AskTracing(telemetry),
    )
    app = web.Application()
    app[STATE_KEY] = state
    app[STATS_KEY] = state.stats

    async def upgrade(request: web.Request) -> web.StreamResponse:
        return await handle_upgrade(request, state)

    app.router.add_get(path, upgrade)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_stop_answers)
    return app


def _frame_keys(signing_key: SigningKeySource | None, require: object) -> FrameKeys | None:
    if require is not None and require not in MODES:
        raise ConfigError(f"require_frames must be one of {MODES} or None, got {require!r}")
    if signing_key is None:
        if require is not None:
            raise ConfigError(
                "require_frames needs signing_key: the server signs its frames with it"
            )
        return None
    from .. import sealing
    from ..signing import load_signing_key, public_key_hex

    if require == "sealed":
        sealing.require()
    key = load_signing_key(signing_key)
    return FrameKeys(key, public_key_hex(key), sealing.available(), require)


async def _close_sockets(app: web.Application) -> None:
    """Close every open WebSocket with 1001 (going away): clients reconnect elsewhere."""
    wires = list(app[STATE_KEY].sockets)
    await asyncio.gather(
        *(
            wire.close(WSCloseCode.GOING_AWAY, b"server shutdown", after_writes=False)
            for wire in wires
        ),
        return_exceptions=True,
    )


async def _stop_answers(app: web.Application) -> None:
    """Cancel the answers still being computed (they outlive their connections)."""
    await app[STATE_KEY].replies.aclose()
