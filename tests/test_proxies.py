"""Proxies over real loopback sockets: HTTP CONNECT (with and without credentials, a
407 refusal, a proxy that vanishes mid-tunnel or cannot reach the server), ``ws://``
through a proxy (and the proxy's own 5xx), the environment's proxy (``trust_env=True``
with ``HTTPS_PROXY``/``NO_PROXY``), and SOCKS5."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from nexus_reactive import (
    ConfigError,
    NexusConnectionError,
    RetriesExhausted,
    WebSocketConfig,
    WebSocketService,
)

from .conftest import KEY, Nexus, ServerFactory, client_config
from .faults import wait_for
from .proxy_servers import HttpProxy, Socks5Proxy
from .waiting import wait_for_state

PASSWORD = "pr0xy-s3cret-51d2"
USER = "alice"
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy", "wss_proxy")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables from the machine running the tests."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture
async def tls_nexus(start_nexus: ServerFactory) -> tuple[Nexus, Any]:
    """The reference server over TLS (a throwaway CA), and the client's SSL context."""
    server = await start_nexus(tls=True)
    return server, server.client_ssl_context


def wss_config(nexus: Nexus, context: Any, **options: Any) -> WebSocketConfig:
    return client_config(f"wss://localhost:{nexus.port}/", ssl=context, **options)


async def test_wss_goes_through_a_connect_tunnel_with_proxy_credentials(
    tls_nexus: tuple[Nexus, Any], clean_env: Any
) -> None:
    nexus, context = tls_nexus
    async with HttpProxy(user=USER, password=PASSWORD) as proxy:
        config = wss_config(nexus, context, proxy=proxy.url_with(USER, PASSWORD))
        async with WebSocketService(config) as service:
            assert (await service.ask("through the tunnel")).answer
        assert proxy.tunnels == 1 and proxy.refused == 0
        assert proxy.targets == [f"localhost:{nexus.port}"]
        # The proxy saw only the CONNECT: the key and the frames went inside TLS.
        seen = b"".join(proxy.heads).decode()
        assert seen.startswith(f"CONNECT localhost:{nexus.port} ")
        assert KEY not in seen and "x-api-key" not in seen.lower()


async def test_a_proxy_that_refuses_the_credentials_is_a_clear_fatal_error(
    tls_nexus: tuple[Nexus, Any], clean_env: Any
) -> None:
    nexus, context = tls_nexus
    async with HttpProxy(user=USER, password="the-right-one") as proxy:
        config = wss_config(nexus, context, proxy=proxy.url_with(USER, PASSWORD))
        service = WebSocketService(config)
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    error = info.value
    assert not error.retryable and error.status == 407
    text = str(error)
    assert "proxy" in text and "refused the credentials" in text and "proxy=" in text
    assert f"127.0.0.1:{proxy.port}" in text
    assert PASSWORD not in text + repr(error) + str(service.state.value) + repr(config)
    assert proxy.refused == 1 and proxy.tunnels == 0  # not retried
    assert nexus.stats.connections_total == 0


async def test_a_proxy_that_vanishes_mid_tunnel_is_reconnected_through(
    tls_nexus: tuple[Nexus, Any], clean_env: Any
) -> None:
    nexus, context = tls_nexus
    async with HttpProxy() as proxy:
        config = wss_config(nexus, context, proxy=proxy.url)
        async with WebSocketService(config) as service:
            await service.ask("before")
            proxy.cut()
            await wait_for(lambda: proxy.tunnels == 2 and service.state.value.connected)
            assert (await service.ask("after")).answer
            assert service.state.value.error is None


async def test_an_unreachable_proxy_is_retried_per_the_backoff(clean_env: Any) -> None:
    proxy = await HttpProxy().start()
    port = proxy.port
    await proxy.close()  # nothing listens there now
    config = client_config(
        "wss://localhost:9/",
        proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}",
        max_reconnect_attempts=2,
    )
    service = WebSocketService(config)
    with pytest.raises(NexusConnectionError) as info:
        await service.connect()
    await service.close()
    text = str(info.value)
    assert "gave up after 3" in text and f"proxy at http://127.0.0.1:{port}" in text
    assert PASSWORD not in text and USER not in text


async def test_ws_through_a_loopback_proxy_forwards_the_upgrade(
    nexus: Nexus, clean_env: Any
) -> None:
    # No tunnel for ws://: the upgrade goes to the proxy, credentials and key with it:
    # allowed for a proxy on loopback (and anywhere with allow_insecure=True).
    async with HttpProxy(user=USER, password=PASSWORD) as proxy:
        config = nexus.config(proxy=proxy.url_with(USER, PASSWORD))
        async with WebSocketService(config) as service:
            assert (await service.ask("forwarded")).answer
    assert proxy.forwarded == 1 and proxy.tunnels == 0 and proxy.refused == 0


async def test_ws_through_a_proxy_that_cannot_reach_the_server_says_so(
    nexus: Nexus, clean_env: Any
) -> None:
    # Over ws:// the proxy answers the upgrade itself when the server is down: its 502
    # is the proxy's, retried with backoff, and comes through again once the server is up.
    await nexus.stop()
    async with HttpProxy(user=USER, password=PASSWORD) as proxy:
        config = nexus.config(proxy=proxy.url_with(USER, PASSWORD), max_reconnect_attempts=None)
        service = WebSocketService(config)
        errors: list[NexusConnectionError] = []
        service.errors.subscribe(lambda e: errors.append(e))  # type: ignore[arg-type]
        connecting = asyncio.ensure_future(service.connect())
        state = await wait_for_state(service, "waiting")
        error = errors[0]
        assert error.status == 502 and error.retryable
        text = str(error)
        assert text.startswith(f"the proxy at http://127.0.0.1:{proxy.port} could not reach")
        assert "HTTP 502 Bad Gateway" in text and "the server failed" not in text
        assert state.error == text and PASSWORD not in text and USER not in text

        await nexus.start()
        await connecting
        assert (await service.ask("through again")).answer
        await service.close()
    assert proxy.unreachable >= 1 and proxy.forwarded >= 2


async def test_a_proxys_ambiguous_503_over_ws_names_both_and_keeps_retry_after(
    nexus: Nexus, clean_env: Any
) -> None:
    await nexus.stop()
    async with HttpProxy(unreachable_status=503, retry_after=7) as proxy:
        service = WebSocketService(nexus.config(proxy=proxy.url, max_reconnect_attempts=0))
        with pytest.raises(NexusConnectionError) as info:
            await service.connect()
        await service.close()
    assert isinstance(info.value, RetriesExhausted)
    error = info.value.last_error
    text = str(error)
    assert f"through the proxy at http://127.0.0.1:{proxy.port} failed with HTTP 503" in text
    assert "the proxy could not reach the server, or the server failed" in text
    assert error.status == 503 and error.retry_after == 7.0 and error.retryable


async def test_wss_through_a_proxy_that_cannot_reach_the_server_is_retried(
    tls_nexus: tuple[Nexus, Any], clean_env: Any
) -> None:
    nexus, context = tls_nexus
    await nexus.stop()
    async with HttpProxy() as proxy:
        service = WebSocketService(wss_config(nexus, context, proxy=proxy.url))
        errors: list[NexusConnectionError] = []
        service.errors.subscribe(lambda e: errors.append(e))  # type: ignore[arg-type]
        connecting = asyncio.ensure_future(service.connect())
        await wait_for_state(service, "waiting")
        assert errors[0].status == 502 and errors[0].retryable
        assert "could not open a tunnel to the server (HTTP 502)" in str(errors[0])
        await nexus.start()
        await connecting
        await service.close()


def test_ws_through_a_remote_proxy_needs_allow_insecure() -> None:
    with pytest.raises(ConfigError, match=r"through the proxy at proxy\.example") as info:
        WebSocketConfig("ws://127.0.0.1:1/", proxy=f"http://{USER}:{PASSWORD}@proxy.example:3128")
    assert "wss://" in str(info.value) and PASSWORD not in str(info.value)
    WebSocketConfig("ws://127.0.0.1:1/", proxy="http://proxy.example:3128", allow_insecure=True)
    WebSocketConfig("wss://nexus.example/", proxy="http://proxy.example:3128")


@pytest.mark.parametrize(
    "proxy",
    [
        f"ftp://{USER}:{PASSWORD}@h:1",
        f"http://{USER}:{PASSWORD}@",
        f"http://{USER}:{PASSWORD}@h:1/path",
        f"http://{USER}:{PASSWORD}@h:99999",
    ],
)
def test_a_bad_proxy_is_a_config_error_without_the_credentials(proxy: str) -> None:
    with pytest.raises(ConfigError, match="proxy") as info:
        WebSocketConfig("wss://nexus.example/", proxy=proxy)
    assert PASSWORD not in str(info.value) and USER not in str(info.value)


def test_the_repr_never_shows_proxy_credentials() -> None:
    config = WebSocketConfig("wss://nexus.example/", proxy=f"http://{USER}:{PASSWORD}@p.example:8")
    assert "proxy='http://<redacted>@p.example:8'" in repr(config)
    assert PASSWORD not in repr(config) + str(config)
    # A password with "@" in it: redacted up to the last "@" before the host.
    config = WebSocketConfig("wss://h/", proxy="http://al:pa@wd@proxy:3128")
    assert "proxy='http://<redacted>@proxy:3128'" in repr(config) and "wd" not in repr(config)


async def test_trust_env_takes_https_proxy_from_the_environment(
    tls_nexus: tuple[Nexus, Any], clean_env: pytest.MonkeyPatch
) -> None:
    nexus, context = tls_nexus
    async with HttpProxy(user=USER, password=PASSWORD) as proxy:
        clean_env.setenv("HTTPS_PROXY", proxy.url_with(USER, PASSWORD))
        clean_env.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # for ws:// only: unused
        async with WebSocketService(wss_config(nexus, context, trust_env=True)) as service:
            assert (await service.ask("via the environment")).answer
        assert proxy.tunnels == 1
        # Without trust_env the environment is not read.
        async with WebSocketService(wss_config(nexus, context)) as service:
            await service.ask("direct")
        assert proxy.tunnels == 1


async def test_trust_env_honours_no_proxy(
    tls_nexus: tuple[Nexus, Any], clean_env: pytest.MonkeyPatch
) -> None:
    nexus, context = tls_nexus
    async with HttpProxy() as proxy:
        clean_env.setenv("HTTPS_PROXY", proxy.url)
        clean_env.setenv("NO_PROXY", "example.org,localhost")
        async with WebSocketService(wss_config(nexus, context, trust_env=True)) as service:
            assert (await service.ask("direct, per NO_PROXY")).answer
    assert proxy.tunnels == 0


async def test_trust_env_refuses_a_remote_proxy_that_would_see_the_key(
    nexus: Nexus, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", f"http://{USER}:{PASSWORD}@proxy.example:3128")
    service = WebSocketService(nexus.config(trust_env=True))
    with pytest.raises(NexusConnectionError, match="trust_env") as info:
        await service.connect()
    await service.close()
    assert not info.value.retryable and PASSWORD not in str(info.value)


async def test_socks5_with_credentials(nexus: Nexus, clean_env: Any) -> None:
    async with Socks5Proxy(user=USER, password=PASSWORD) as proxy:
        config = nexus.config(proxy=proxy.url_with(USER, PASSWORD))
        async with WebSocketService(config) as service:
            assert (await service.ask("through socks")).answer
            proxy.cut()  # vanishes mid-tunnel: reconnected through it
            await wait_for(lambda: proxy.tunnels == 2 and service.state.value.connected)
            assert (await service.ask("again")).answer
    assert proxy.targets[0] == f"127.0.0.1:{nexus.port}"


async def test_socks5_refusing_the_credentials_is_fatal(nexus: Nexus, clean_env: Any) -> None:
    async with Socks5Proxy(user=USER, password="the-right-one") as proxy:
        service = WebSocketService(nexus.config(proxy=proxy.url_with(USER, PASSWORD)))
        with pytest.raises(NexusConnectionError, match="refused the credentials") as info:
            await service.connect()
        await service.close()
    assert not info.value.retryable and proxy.refused == 1
    assert PASSWORD not in str(info.value) and "proxy=" in str(info.value)


def test_socks_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aiohttp_socks", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"nexus-reactive\[socks\]") as info:
        WebSocketConfig("wss://nexus.example/", proxy=f"socks5://{USER}:{PASSWORD}@p:1080")
    assert PASSWORD not in str(info.value)
