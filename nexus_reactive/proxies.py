"""Proxies: which one an attempt goes through, how to reach it, what its refusals mean.

- ``proxy="http://user:password@host:port"``: an HTTP proxy. For ``wss://`` aiohttp opens
  a ``CONNECT`` tunnel and TLS runs inside it, end to end with the server: the proxy sees
  neither the API key nor the frames. For ``ws://`` the upgrade request itself goes to
  the proxy (no tunnel), so the proxy sees the API key: the config refuses that unless
  the proxy is on loopback or ``allow_insecure=True``.
- ``proxy="socks5://..."`` (``socks5h://``: the proxy resolves the host name;
  ``socks4://``): a SOCKS tunnel, through the optional ``aiohttp-socks``
  (``pip install 'nexus-reactive[socks]'``).
- ``trust_env=True``: the proxy comes from the environment, per attempt, the way
  ``curl``, ``requests`` and the ``websockets`` library read it: ``wss://`` uses
  ``HTTPS_PROXY`` (``WSS_PROXY`` first if set), ``ws://`` uses ``HTTP_PROXY``
  (``WS_PROXY`` first), then ``ALL_PROXY``; ``NO_PROXY`` lists hosts to reach directly.
  A value without a scheme (``user:password@host:3128``) means ``http://``, as in curl.
  (aiohttp's own ``trust_env`` reads only ``WS_PROXY``/``WSS_PROXY`` for WebSocket URLs.)

The proxy's credentials go only in the ``Proxy-Authorization`` header (or the SOCKS
handshake) and never into a log, repr or error: :func:`shown` is how a proxy is named.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config_checks import SOCKS_SCHEMES, ProxyUrl, check_proxy, redact_url
from .errors import NexusConnectionError

if TYPE_CHECKING:
    # aiohttp and yarl load with the transport (the first connection), not at
    # `import nexus_reactive`: each function that needs them imports them.
    import aiohttp
    from yarl import URL

__all__ = ["env_proxy", "proxy_error", "proxy_headers", "shown", "socks_connector"]


def env_proxy(url: URL) -> str | None:
    """The proxy the environment names for ``url`` (``trust_env=True``), or ``None``."""
    import urllib.request  # ~15 ms (http.client, email): only with trust_env=True

    proxies = urllib.request.getproxies()
    host = url.host or ""
    if host and urllib.request.proxy_bypass(host):
        return None
    keys = ("wss", "https", "all") if url.scheme == "wss" else ("ws", "http", "all")
    for key in keys:
        if proxies.get(key):
            # curl and requests read a proxy without a scheme (HTTP_PROXY=host:3128, or
            # user:password@host:3128) as http://.
            proxy: str = proxies[key]
            return proxy if "://" in proxy else f"http://{proxy}"
    return None


def shown(proxy: ProxyUrl) -> str:
    """The proxy as it may be shown: scheme, host and port, no credentials."""
    from yarl import URL

    return f"{proxy.scheme}://{URL.build(host=proxy.host).host_port_subcomponent}:{proxy.port}"


def proxy_headers(proxy: ProxyUrl) -> dict[str, str]:
    """The ``Proxy-Authorization`` header for an HTTP proxy's credentials, if any."""
    if proxy.user is None:
        return {}
    token = base64.b64encode(f"{proxy.user}:{proxy.password or ''}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


def socks_connector(proxy: ProxyUrl) -> aiohttp.BaseConnector:
    """An aiohttp connector that opens every connection through a SOCKS proxy."""
    from aiohttp_socks import ProxyConnector, ProxyType  # the socks extra (checked)

    kind = ProxyType.SOCKS4 if proxy.scheme == "socks4" else ProxyType.SOCKS5
    return ProxyConnector(
        host=proxy.host,
        port=proxy.port,
        proxy_type=kind,
        username=proxy.user,
        password=proxy.password,
        rdns=proxy.scheme == "socks5h",
    )


def is_socks(proxy: ProxyUrl | None) -> bool:
    return proxy is not None and proxy.scheme in SOCKS_SCHEMES


def resolve(configured: str | None, trust_env: bool, url: URL) -> ProxyUrl | None:
    """The proxy for one attempt to ``url``: the configured one, else the environment's."""
    if configured is None and trust_env:
        configured = env_proxy(url)
    return check_proxy(configured)


def proxy_error(
    exc: BaseException, proxy: ProxyUrl, forwarded: bool = False
) -> NexusConnectionError | None:
    """What a failure that came from the proxy means, or ``None`` if it did not.

    ``forwarded``: the upgrade itself went to an HTTP proxy (``ws://``, no tunnel), so
    an HTTP error status may be the proxy's own answer rather than the server's.
    """
    import aiohttp

    name = shown(proxy)
    status = getattr(exc, "status", None)
    if isinstance(exc, aiohttp.ClientHttpProxyError) or (
        isinstance(exc, aiohttp.WSServerHandshakeError) and status == 407
    ):
        return http_proxy_refused(status or 0, name)
    if (
        forwarded
        and not is_socks(proxy)
        and isinstance(exc, aiohttp.WSServerHandshakeError)
        and exc.status >= 500
    ):
        return forwarded_refused(exc.status, name, exc.headers)
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return NexusConnectionError(
            f"cannot connect to the proxy at {name}: {exc.strerror}", cause="connect_failed"
        )
    socks_error = _socks_errors()
    if socks_error and isinstance(exc, socks_error):
        message = redact_url(str(exc))
        code = getattr(exc, "error_code", None)
        if code is None and "authentic" in message.lower():
            return NexusConnectionError(
                f"the SOCKS proxy at {name} refused the credentials ({message}): check the "
                "user and password in proxy= (socks5://user:password@host:port). Not retrying.",
                retryable=False,
            )
        return NexusConnectionError(
            f"the SOCKS proxy at {name} failed: {message}", cause="connect_failed"
        )
    return None


def http_proxy_refused(status: int, name: str) -> NexusConnectionError:
    if status == 407:
        return NexusConnectionError(
            f"the proxy at {name} refused the credentials (HTTP 407 Proxy Authentication "
            "Required): check the user and password in proxy= "
            "(http://user:password@host:port). Not retrying.",
            retryable=False,
            status=407,
        )
    if status >= 500 or status in (408, 429):
        return NexusConnectionError(
            f"the proxy at {name} could not open a tunnel to the server (HTTP {status})",
            status=status,
            cause="connect_failed",
        )
    return NexusConnectionError(
        f"the proxy at {name} refused to open a tunnel to the server (HTTP {status}): it "
        "may not allow this host or port. Not retrying.",
        retryable=False,
        status=status,
    )


def forwarded_refused(
    status: int, name: str, headers: Mapping[str, str] | None
) -> NexusConnectionError:
    """A 5xx to a ``ws://`` upgrade sent through an HTTP proxy: retried with backoff
    (and ``Retry-After``), and said to be the proxy's when the status says so."""
    from .core.policy import header_retry_after

    retry_after = header_retry_after(headers.get("Retry-After") if headers else None)
    if status in (502, 504):  # a gateway's own statuses (RFC 9110, 15.6.3 and 15.6.5)
        kind = "Bad Gateway" if status == 502 else "Gateway Timeout"
        text = (
            f"the proxy at {name} could not reach the server (HTTP {status} {kind}, the "
            "proxy's own answer to the upgrade): the server may be down, or unreachable "
            "from the proxy"
        )
    else:
        text = (
            f"the upgrade through the proxy at {name} failed with HTTP {status}: the proxy "
            "could not reach the server, or the server failed the upgrade (over ws:// the "
            "proxy answers for the server, and the status does not say which)"
        )
    return NexusConnectionError(text, status=status, retry_after=retry_after)


def _socks_errors() -> tuple[type[BaseException], ...]:
    try:
        from aiohttp_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError
    except ImportError:
        return ()
    errors: tuple[Any, ...] = (ProxyError, ProxyConnectionError, ProxyTimeoutError)
    return errors
