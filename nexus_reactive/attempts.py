"""What one connection attempt resolves before it dials: its API key and its URL (each
provider called once, within the attempt's deadline) and its proxy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .config import WebSocketConfig
from .config_checks import ProxyUrl, check_proxy, check_url, redact_url
from .errors import ConfigError, NexusConnectionError
from .proxies import env_proxy

__all__ = ["attempt_proxy", "provided"]


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
        raise NexusConnectionError(
            redact_url(f"the {what} provider raised {type(exc).__name__}: {exc}"), cause="provider"
        ) from exc


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
