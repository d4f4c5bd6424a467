"""What one connection attempt resolves before it dials: its API key and its URL (each
provider called once, within the attempt's deadline) and its proxy; and the dialer
that opens aiohttp's connections, with the sessions they need."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from .config import WebSocketConfig
from .config_checks import ProxyUrl, check_proxy, check_url
from .errors import ConfigError, NexusConnectionError, raised_where
from .proxies import env_proxy, is_socks

if TYPE_CHECKING:
    import aiohttp

    from .transport import Transport, TransportFactory

__all__ = ["attempt_proxy", "dialer", "provided", "upgrade_headers"]


@contextlib.asynccontextmanager
async def dialer(config: WebSocketConfig, autoping: bool = True) -> AsyncIterator[TransportFactory]:
    """aiohttp's transport factory for ``config``, with the sessions it opens.

    ``autoping=False``: pongs come to the receive loop (the meter times its own pings).

    The sessions live exactly as long as this context (a connection's supervisor
    task): closing them is awaited, and a supervisor that ends leaves nothing open
    behind it. One session, plus one per SOCKS proxy used (a SOCKS proxy is the
    session's connector).
    """
    # aiohttp loads here, on the first connection, not at `import nexus_reactive`.
    from .aiohttp_transport import open_session, open_transport

    async with contextlib.AsyncExitStack() as stack:
        sessions: dict[ProxyUrl | None, aiohttp.ClientSession] = {}

        async def dial(url: str, headers: Mapping[str, str], deadline: float) -> Transport:
            proxy = attempt_proxy(config, url)
            key = proxy if is_socks(proxy) else None
            session = sessions.get(key)
            if session is None:
                session = await stack.enter_async_context(open_session(key))
                sessions[key] = session
            return await open_transport(
                session,
                url,
                headers=headers,
                ssl=config.ssl,
                heartbeat=config.heartbeat,
                connect_timeout=config.connect_timeout,
                max_message_size=config.max_message_size,
                deadline=deadline,
                proxy=proxy,
                compression=config.compression,
                subprotocols=config.subprotocols,
                autoping=autoping,
            )

        yield dial


async def provided(
    what: str, provider: Callable[[], Awaitable[str]], deadline: float, config: WebSocketConfig
) -> str:
    """Call a per-attempt provider (the key's, the URL's) within the attempt's deadline.

    A provider that raises is retried per the policy (the next attempt calls it again);
    one that returns nothing usable (a ``ConfigError``) is fatal.
    """
    try:
        async with asyncio.timeout_at(deadline):
            return await provider()
    except TimeoutError:
        raise NexusConnectionError(
            f"the {what} provider did not return within connect_timeout "
            f"({config.connect_timeout:g}s)",
            cause="provider",
        ) from None
    except ConfigError as exc:
        raise NexusConnectionError(f"{exc}. Not retrying.", retryable=False) from exc
    except Exception as exc:
        # Its type and where, never its text (which might quote the secret it was
        # fetching); not chained either: a printed chain would show that text.
        failed = raised_where(exc)
    raise NexusConnectionError(
        f"the {what} provider raised {failed}; check where it gets the {what} from",
        cause="provider",
    )


def attempt_proxy(config: WebSocketConfig, url: str) -> ProxyUrl | None:
    """The proxy of one attempt to ``url`` (``proxy=``, or the environment's with
    ``trust_env=True``), checked like the configured one.

    Raises:
        NexusConnectionError: (fatal) the environment names an unusable proxy, or one
            that would see the API key in clear text.
    """
    if config.proxy is not None or not config.trust_env:
        return check_proxy(config.proxy)
    from yarl import URL  # loaded with the config already

    try:
        proxy = env_proxy(URL(url))
        if proxy is not None:
            check_url(url, allow_insecure=config.allow_insecure, proxy=proxy)
        return check_proxy(proxy)
    except ConfigError as exc:
        raise NexusConnectionError(
            f"trust_env=True: the environment's proxy: {exc}. Not retrying.", retryable=False
        ) from None


def upgrade_headers(config: WebSocketConfig, api_key: str) -> dict[str, str]:
    """The headers of an attempt's upgrade request: the configured ones, the API key,
    and ``x-max-message-size`` (a server that would send a bigger reply refuses that
    ask, error ``too_large``, instead of having it closed with 1009 on every reconnect).
    """
    return {
        **config.headers,
        "x-api-key": api_key,
        "x-max-message-size": str(config.max_message_size),
    }
