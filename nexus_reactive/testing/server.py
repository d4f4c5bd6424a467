"""The reference server in a test: on a free loopback port, with a key, stoppable.

:class:`NexusServer` runs :func:`nexus_reactive.server.create_app` in the test's own
event loop (no subprocess, no thread), so a test can read its counters
(:attr:`NexusServer.stats`), stop it, restart it on the same port, or close every
connection with a WebSocket close code. With ``tls=True`` it serves ``wss://`` with a
throwaway certificate (:mod:`nexus_reactive.testing.tls`).
"""

from __future__ import annotations

import secrets
import ssl
from typing import Any, Self, Unpack

from aiohttp import web

from ..config import WebSocketConfig
from ..server import STATE_KEY, STATS_KEY, AppOptions, ServerStats, create_app
from .tls import ThrowawayTls, throwaway_tls
from .waiting import EVENTUALLY

__all__ = ["NexusServer", "client_config"]

#: Seconds open connections get to close when the server stops.
SHUTDOWN_TIMEOUT = 2.0


def client_config(url: str, api_key: str, /, **options: Any) -> WebSocketConfig:
    """A client config for ``url`` and ``api_key`` with test-sized intervals.

    Retries are quick (10 ms, at most 50 ms apart), so a reconnect test does not wait
    for a real backoff; the bounds on a connect, on key-pair authentication and on an
    ask are generous (:data:`~nexus_reactive.testing.EVENTUALLY`), so that a loaded
    machine never trips them: a test of those bounds sets its own. ``options``
    override any of these, ``url=`` included.
    """
    defaults: dict[str, Any] = {
        "url": url,
        "api_key": api_key,
        "reconnect_interval": 0.01,
        "max_reconnect_interval": 0.05,
        "connect_timeout": EVENTUALLY,
        "request_timeout": EVENTUALLY,
        "auth_timeout": EVENTUALLY,
    }
    defaults.update(options)
    return WebSocketConfig(**defaults)


class NexusServer:
    """The reference server on ``127.0.0.1``, on a free port, with an API key.

    Args:
        api_keys: the accepted keys; by default one fresh random key. :attr:`key`
            is the first.
        tls: serve ``wss://`` with a throwaway CA and certificate (for ``127.0.0.1``
            and ``localhost``), made in memory for this server and kept across
            restarts. :meth:`config` trusts that CA (and only it);
            :attr:`client_ssl_context` and :attr:`ca_pem` are for other clients.
        **app_options: the other options of :func:`~nexus_reactive.server.create_app`
            (``engine=``, ``heartbeat=``, ``rate_limit=``, ...).

    Use it as an async context manager, or :meth:`start` and :meth:`stop`; the
    ``nexus_server`` fixture does that for you.
    """

    def __init__(
        self,
        *,
        api_keys: str | list[str] | None = None,
        tls: bool = False,
        **app_options: Unpack[AppOptions],
    ) -> None:
        keys = [secrets.token_urlsafe(16)] if api_keys is None else api_keys
        self.api_keys: list[str] = [keys] if isinstance(keys, str) else list(keys)
        if not self.api_keys:
            raise ValueError("NexusServer needs at least one API key")
        if not isinstance(tls, bool):
            raise TypeError(f"tls must be True or False, got {tls!r}")
        self._tls: ThrowawayTls | None = throwaway_tls() if tls else None
        self._client_ssl: ssl.SSLContext | None = None
        self._options = app_options
        #: The loopback port: 0 until started, then kept across :meth:`restart`.
        self.port = 0
        #: Times :meth:`restart` was called.
        self.restarts = 0
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    @property
    def key(self) -> str:
        """The API key clients send (the first of ``api_keys``)."""
        return self.api_keys[0]

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT/`` (``wss://`` with ``tls=True``; with the app's
        ``path=``, if one was given)."""
        path = self._options.get("path", "/")
        scheme = "wss" if self._tls is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def tls(self) -> bool:
        """Whether it serves ``wss://`` (``tls=True``)."""
        return self._tls is not None

    @property
    def client_ssl_context(self) -> ssl.SSLContext | None:
        """With ``tls=True``: a client context that trusts this server's CA, and only
        it, checking host names (``WebSocketConfig(ssl=...)``); else ``None``."""
        if self._tls is not None and self._client_ssl is None:
            self._client_ssl = self._tls.client_context()
        return self._client_ssl

    @property
    def ca_pem(self) -> bytes | None:
        """With ``tls=True``: the CA's certificate (PEM), for a client of your own
        (``ssl.create_default_context(cadata=...)``, a ``cafile``); else ``None``."""
        return None if self._tls is None else self._tls.ca_pem

    @property
    def running(self) -> bool:
        """Listening now (started, and not stopped)."""
        return self._runner is not None

    @property
    def stats(self) -> ServerStats:
        """The counters of the current run (a restart starts new ones): connections
        (``connections_total``, ``connections_open``), ``asks_received``,
        ``engine_calls``, ``asks_replayed``, ..."""
        if self._app is None:
            raise RuntimeError("the server has not been started")
        return self._app[STATS_KEY]

    def config(self, **options: Any) -> WebSocketConfig:
        """A client config for this server: its URL and key, test-sized intervals
        (see :func:`client_config`), and with ``tls=True`` ``ssl=`` trusting its CA;
        ``options`` override any field."""
        if self._tls is not None:
            options.setdefault("ssl", self.client_ssl_context)
        return client_config(self.url, self.key, **options)

    async def start(self) -> None:
        """Start listening: on a free port the first time, then on the same port."""
        if self._runner is not None:
            return
        app = create_app(api_keys=self.api_keys, **self._options)
        runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            context = None if self._tls is None else self._tls.server_context()
            site = web.TCPSite(
                runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=context
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = site.port  # the port the system picked, the first time
        self._app, self._runner = app, runner

    async def stop(self) -> None:
        """Stop: open connections are closed with 1001 (going away), then the port is
        released (new connects are refused). :attr:`stats` stays readable."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def restart(self) -> None:
        """:meth:`stop`, then :meth:`start` again on the same port, with a fresh app
        (new counters, an empty reply cache), as a real server restart."""
        await self.stop()
        self.restarts += 1
        await self.start()

    async def close_connections(self, code: int = 1012, reason: str = "") -> int:
        """Close every open WebSocket with ``code`` (1012: service restart) and
        ``reason``; the server goes on listening. Returns how many were closed."""
        if self._app is None:
            return 0
        wires = list(self._app[STATE_KEY].sockets)
        for wire in wires:
            await wire.close(code, reason.encode(), after_writes=False)
        return len(wires)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<NexusServer {self.url} {state}>"  # never the key, nor the TLS key
