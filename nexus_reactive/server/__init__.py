"""The reference Nexus server: the protocol of PROTOCOL.md over aiohttp.

It checks ``x-api-key`` before upgrading, answers every ``ask`` with exactly one
``response`` or ``error`` (each in its own task, so answers may come back out of
order), answers a repeated ask id with the remembered reply, and reports every bad
frame with an ``error`` instead of dropping the connection.

The modules, one job each:

- :mod:`.app`: :func:`create_app`, the :class:`aiohttp.web.Application`;
- :mod:`.auth`: the accepted API keys and the constant-time check;
- :mod:`.connection`: one WebSocket: receive loop, dispatch, answering;
- :mod:`.dedupe`: the reply cache that makes ask ids idempotency keys;
- :mod:`.engine`: the :class:`Engine` protocol and the default :class:`EchoEngine`;
- :mod:`.state`: what an app holds, and its :class:`ServerStats`;
- :mod:`.runner`: :func:`serve` and :func:`run_server`, for the CLI.

Example::

    from aiohttp import web
    from nexus_reactive.server import create_app

    web.run_app(create_app(api_keys="secret"), port=8000)
"""

from __future__ import annotations

from .app import STATE_KEY, STATS_KEY, create_app
from .auth import API_KEY_ENV, API_KEY_HEADER
from .dedupe import ReplyCache
from .engine import EchoEngine, Engine, count_tokens
from .runner import AppOptions, run_server, serve
from .state import ServerState, ServerStats

__all__ = [
    "API_KEY_ENV",
    "API_KEY_HEADER",
    "STATE_KEY",
    "STATS_KEY",
    "AppOptions",
    "EchoEngine",
    "Engine",
    "ReplyCache",
    "ServerState",
    "ServerStats",
    "count_tokens",
    "create_app",
    "run_server",
    "serve",
]
