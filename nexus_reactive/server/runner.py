"""Running the server on a TCP port until SIGINT or SIGTERM, over plain TCP or TLS.

On startup one line goes to stdout, flushed, for scripts to parse::

    nexus-reactive server listening on ws://127.0.0.1:8000

With ``port=0`` it shows the port the system picked; with TLS the scheme is
``wss://``. A server with a signing key prints a second line, its public key for
clients to pin (``server_key=``, ``--server-key``)::

    server public key: 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Callable, Iterable
from typing import Any, TypedDict, Unpack

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..config_checks import redact_url
from ..errors import ConfigError
from ..framing import FramesMode
from ..signing import SigningKeySource
from ..telemetry import Telemetry
from .app import STATE_KEY, create_app
from .engine import Engine

__all__ = ["AppOptions", "run_server", "serve", "server_ssl_context"]

StrPath = str | os.PathLike[str]

logger = logging.getLogger("nexus_reactive.server")

#: Seconds open connections get to finish on shutdown before their handlers are cancelled.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


class AppOptions(TypedDict, total=False):
    """The keyword arguments of :func:`create_app` other than ``api_keys``."""

    engine: Engine | None
    path: str
    dedupe_size: int
    dedupe_ttl: float
    abandon_after: float
    max_message_size: int
    max_query_length: int
    max_team_id_length: int
    heartbeat: float | None
    require_signature: bool
    allowed_pubkeys: Iterable[str] | None
    signing_key: SigningKeySource | None
    require_frames: FramesMode | None
    auth_timeout: float
    rate_limit: float | None
    rate_burst: int | None
    abuse_threshold: int
    clock: Callable[[], float]
    telemetry: bool | Telemetry | None


def server_ssl_context(certfile: StrPath, keyfile: StrPath | None = None) -> ssl.SSLContext:
    """Make a TLS context for serving ``wss://`` (TLS 1.2 or newer).

    Args:
        certfile: PEM file with the server's certificate, then any intermediates.
        keyfile: PEM file with the certificate's private key (unencrypted);
            ``None`` if ``certfile`` holds it too.

    Returns:
        A server-side :class:`ssl.SSLContext` with the certificate loaded.

    Raises:
        ConfigError: a file cannot be read, or the key does not match the
            certificate. The message names the files, never their contents.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    files = f"certfile {os.fspath(certfile)!r}" + (
        f" and keyfile {os.fspath(keyfile)!r}" if keyfile is not None else ""
    )
    try:
        context.load_cert_chain(certfile, keyfile)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename or files} does not exist") from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"TLS: cannot use {files}: {exc.reason or 'invalid'}; expected a PEM certificate "
            "and its unencrypted PEM private key"
        ) from None
    except OSError as exc:
        raise ConfigError(f"TLS: cannot read {files}: {exc.strerror or exc}") from None
    return context


def _tls(
    ssl_context: ssl.SSLContext | None, certfile: StrPath | None, keyfile: StrPath | None
) -> ssl.SSLContext | None:
    if ssl_context is not None and (certfile is not None or keyfile is not None):
        raise ConfigError("pass either ssl_context or certfile/keyfile, not both")
    if certfile is None:
        if keyfile is not None:
            raise ConfigError("keyfile needs certfile: pass the certificate too")
        return ssl_context
    return server_ssl_context(certfile, keyfile)


def announce(url: str) -> None:
    """Print the startup line to stdout and flush it.

    Args:
        url: the URL the server listens on.
    """
    print(f"nexus-reactive server listening on {url}", flush=True)


async def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_keys: str | Iterable[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    stop: asyncio.Event | None = None,
    on_listening: Callable[[str], object] = announce,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    **app_options: Unpack[AppOptions],
) -> None:
    """Serve until ``stop`` is set (or, without ``stop``, until SIGINT or SIGTERM).

    Args:
        host: the interface to bind.
        port: the TCP port; 0 picks a free one.
        api_keys: the accepted keys, as for :func:`create_app`.
        ssl_context: serve ``wss://`` with this server-side TLS context.
        certfile: serve ``wss://`` with this PEM certificate (chain) file; see
            :func:`server_ssl_context`. Not together with ``ssl_context``.
        keyfile: the PEM private key of ``certfile``, if not in that file.
        stop: an event that ends the server when set. Without it, SIGINT and
            SIGTERM do (where the platform allows signal handlers).
        on_listening: called once with the ``ws://`` or ``wss://`` URL when the
            port is bound; by default prints the startup line.
        shutdown_timeout: seconds open connections get to close on shutdown.
        **app_options: the other options of :func:`create_app`.

    Raises:
        ConfigError: no API key (see :func:`create_app`), or unusable TLS files
            or options.
        OSError: the address cannot be bound (e.g. the port is in use).
    """
    context = _tls(ssl_context, certfile, keyfile)
    app = create_app(api_keys=api_keys, **app_options)
    if stop is None:
        stop = asyncio.Event()
        uninstall = _install_signal_handlers(stop)
    else:
        uninstall = _nothing
    runner = web.AppRunner(
        app, shutdown_timeout=shutdown_timeout, access_log_class=RedactedAccessLogger
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
        scheme = "ws" if context is None else "wss"
        on_listening(_url(scheme, host, runner.addresses, app_options.get("path", "/")))
        frames = app[STATE_KEY].frames
        if frames is not None:
            print(f"server public key: {frames.public_hex}", flush=True)
        await stop.wait()
        logger.info("shutting down")
    finally:
        uninstall()
        await runner.cleanup()


def run_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    api_keys: str | Iterable[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    **app_options: Unpack[AppOptions],
) -> None:
    """Run the server in a new event loop until SIGINT or SIGTERM, then shut down cleanly.

    Args:
        host: the interface to bind.
        port: the TCP port; 0 picks a free one (the startup line shows which).
        api_keys: the accepted keys; ``None`` reads ``NEXUS_API_KEY``.
        ssl_context: serve ``wss://`` with this server-side TLS context.
        certfile: serve ``wss://`` with this PEM certificate file.
        keyfile: the PEM private key of ``certfile``, if not in that file.
        **app_options: the other options of :func:`create_app`.

    Raises:
        ConfigError: no API key (see :func:`create_app`), or unusable TLS files.
        OSError: the address cannot be bound.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            serve(
                host,
                port,
                api_keys=api_keys,
                ssl_context=ssl_context,
                certfile=certfile,
                keyfile=keyfile,
                **app_options,
            )
        )


def _install_signal_handlers(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            # Windows, or not the main thread: KeyboardInterrupt still stops run_server.
            continue
        installed.append(signum)

    def uninstall() -> None:
        for signum in installed:
            loop.remove_signal_handler(signum)

    return uninstall


def _nothing() -> None:
    pass


def _url(scheme: str, host: str, addresses: list[Any], path: str) -> str:
    # A name like "localhost" may bind one socket per address family; with port 0
    # each gets its own port, so then the URL names the first socket's address.
    ip, port = addresses[0][0], addresses[0][1]
    if len({address[1] for address in addresses}) > 1:
        host = ip
    shown = f"[{host}]" if ":" in host else host
    suffix = "" if path == "/" else path
    return f"{scheme}://{shown}:{port}{suffix}"


class RedactedAccessLogger(AbstractAccessLogger):
    """aiohttp's access log, with query values redacted: a client that passes a token in
    the URL (``?token=...``) does not find it in the server's log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %s %.3fs',
            request.remote,
            request.method,
            redact_url(request.path_qs),
            response.status,
            time,
        )
