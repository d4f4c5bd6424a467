"""Running the server on a TCP port until SIGINT or SIGTERM.

On startup exactly one line goes to stdout, flushed, for scripts to parse::

    nexus-reactive server listening on ws://127.0.0.1:8000

With ``port=0`` it shows the port the system picked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterable
from typing import Any, TypedDict, Unpack

from aiohttp import web

from .app import create_app
from .engine import Engine

__all__ = ["AppOptions", "run_server", "serve"]

logger = logging.getLogger("nexus_reactive.server")

#: Seconds open connections get to finish on shutdown before their handlers are cancelled.
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


class AppOptions(TypedDict, total=False):
    """The keyword arguments of :func:`create_app` other than ``api_keys``."""

    engine: Engine | None
    path: str
    dedupe_size: int
    dedupe_ttl: float
    max_message_size: int
    heartbeat: float | None


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
        stop: an event that ends the server when set. Without it, SIGINT and
            SIGTERM do (where the platform allows signal handlers).
        on_listening: called once with the ``ws://`` URL when the port is bound;
            by default prints the startup line.
        shutdown_timeout: seconds open connections get to close on shutdown.
        **app_options: the other options of :func:`create_app`.

    Raises:
        ConfigError: no API key (see :func:`create_app`).
        OSError: the address cannot be bound (e.g. the port is in use).
    """
    app = create_app(api_keys=api_keys, **app_options)
    if stop is None:
        stop = asyncio.Event()
        uninstall = _install_signal_handlers(stop)
    else:
        uninstall = _nothing
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        on_listening(_url(host, runner.addresses, app_options.get("path", "/")))
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
    **app_options: Unpack[AppOptions],
) -> None:
    """Run the server in a new event loop until SIGINT or SIGTERM, then shut down cleanly.

    Args:
        host: the interface to bind.
        port: the TCP port; 0 picks a free one (the startup line shows which).
        api_keys: the accepted keys; ``None`` reads ``NEXUS_API_KEY``.
        **app_options: the other options of :func:`create_app`.

    Raises:
        ConfigError: no API key (see :func:`create_app`).
        OSError: the address cannot be bound.
    """
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, port, api_keys=api_keys, **app_options))


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


def _url(host: str, addresses: list[Any], path: str) -> str:
    # A name like "localhost" may bind one socket per address family; with port 0
    # each gets its own port, so then the URL names the first socket's address.
    ip, port = addresses[0][0], addresses[0][1]
    if len({address[1] for address in addresses}) > 1:
        host = ip
    shown = f"[{host}]" if ":" in host else host
    suffix = "" if path == "/" else path
    return f"ws://{shown}:{port}{suffix}"
