"""The reference Nexus server: the protocol of docs/protocol.md over aiohttp.

It checks ``x-api-key`` before upgrading, answers every ``ask`` with exactly one
``response`` or ``error`` (each in its own task, so answers may come back out of
order), answers a repeated ask id with the remembered reply, and reports every bad
frame with an ``error`` instead of dropping the connection. Optionally it requires
Ed25519 key-pair authentication, limits each API key's message rate, streams
answers as ``response_chunk`` s, and serves ``wss://``.

The modules, one job each:

- :mod:`.app`: :func:`create_app`, the :class:`aiohttp.web.Application`;
- :mod:`.auth`: the accepted API keys and the constant-time check;
- :mod:`.connection`: one WebSocket: receive loop, dispatch, answering;
- :mod:`.dedupe`: the reply cache that makes ask ids idempotency keys: each answer
  computed once, a resent ask joins it;
- :mod:`.docsearch`: :class:`DocsEngine`, answers from documents with SQLite FTS5;
- :mod:`.engine`: the :class:`Engine` protocol (plain, async or streaming) and
  the default :class:`EchoEngine`;
- :mod:`.keyauth`: challenges, and judging the ``auth`` that answers one;
- :mod:`.ratelimit`: the per-API-key token buckets;
- :mod:`.state`: what an app holds, and its :class:`ServerStats`;
- :mod:`.runner`: :func:`serve` and :func:`run_server` (TCP or TLS), for the CLI.

Example::

    from aiohttp import web
    from nexus_reactive.server import create_app

    web.run_app(create_app(api_keys="secret"), port=8000)
"""

from __future__ import annotations

from .app import STATE_KEY, STATS_KEY, create_app
from .auth import API_KEY_ENV, API_KEY_HEADER
from .connection import CLOSE_RATE_LIMITED
from .dedupe import ReplyCache
from .engine import EchoEngine, Engine, EngineResult, count_tokens
from .keyauth import CLOSE_AUTH_FAILED, CLOSE_FORBIDDEN
from .ratelimit import RateLimiter, TokenBucket
from .runner import AppOptions, run_server, serve, server_ssl_context
from .state import ServerState, ServerStats

__all__ = [
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "CLOSE_AUTH_FAILED",
    "CLOSE_FORBIDDEN",
    "CLOSE_RATE_LIMITED",
    "STATE_KEY",
    "STATS_KEY",
    "AppOptions",
    "EchoEngine",
    "Engine",
    "EngineResult",
    "RateLimiter",
    "ReplyCache",
    "ServerState",
    "ServerStats",
    "TokenBucket",
    "count_tokens",
    "create_app",
    "run_server",
    "serve",
    "server_ssl_context",
]
