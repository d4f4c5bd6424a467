"""The pytest plugin of nexus-reactive's test kit (:mod:`nexus_reactive.testing`).

Registered as the ``nexus_reactive`` plugin (``-p no:nexus_reactive`` turns it off).
It lives outside the ``nexus_reactive`` package, as Hypothesis's plugin does, so that
loading it imports only pytest: a project that has the library installed but does not
use these fixtures pays nothing. The kit is imported when a fixture is first used.

The fixtures are async: with pytest-asyncio (``pip install 'nexus-reactive[testing]'``)
they work in its ``auto`` and ``strict`` modes (in strict mode, mark the tests with
``@pytest.mark.asyncio``). They run in the loop of your async fixtures, which must be
the loop of your tests (pytest-asyncio's default: one loop per test).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nexus_reactive.testing import FaultProxy, NexusServer, ProxyFactory, ServerFactory

if TYPE_CHECKING:
    _async_fixture = pytest.fixture  # the same signature, for the type checker
else:
    try:
        from pytest_asyncio import fixture as _async_fixture
    except ImportError:  # another async plugin (anyio's...) may run them; else pytest says so
        _async_fixture = pytest.fixture

__all__ = ["fault_proxy", "nexus_key", "nexus_server", "nexus_server_factory"]


@pytest.fixture
def nexus_key() -> str:
    """The API key of the ``nexus_server`` fixtures: fresh for each test. Override
    this fixture to choose one."""
    return secrets.token_urlsafe(16)


@_async_fixture
async def nexus_server_factory(nexus_key: str) -> AsyncIterator[ServerFactory]:
    """Start reference servers: ``await nexus_server_factory(engine=..., ...)`` takes
    the options of ``create_app`` (``api_keys`` defaults to ``[nexus_key]``) and
    returns a started :class:`~nexus_reactive.testing.NexusServer`. Every server
    started is stopped after the test."""
    from nexus_reactive.testing import NexusServer

    servers: list[NexusServer] = []

    async def start(**options: Any) -> NexusServer:
        options.setdefault("api_keys", [nexus_key])
        server = NexusServer(**options)
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in reversed(servers):
        await server.stop()


@_async_fixture
async def nexus_server(nexus_server_factory: ServerFactory) -> NexusServer:
    """A reference server with its default options (the echo engine: it answers
    ``You asked: <question>``), on a free loopback port, with the key ``nexus_key``."""
    return await nexus_server_factory()


@_async_fixture
async def fault_proxy() -> AsyncIterator[ProxyFactory]:
    """Put a :class:`~nexus_reactive.testing.FaultProxy` in front of a server:
    ``proxy = await fault_proxy(nexus_server)`` (or a ``ws://host:port/`` URL, or a
    loopback port); connect to ``proxy.url()``. Every proxy is closed after the test."""
    from urllib.parse import urlsplit

    from nexus_reactive.testing import FaultProxy

    proxies: list[FaultProxy] = []

    async def start(target: NexusServer | str | int) -> FaultProxy:
        if isinstance(target, int):
            host, port = "127.0.0.1", target
        else:
            url = urlsplit(target if isinstance(target, str) else target.url)
            if url.hostname is None or url.port is None:
                raise ValueError(f"fault_proxy needs a host and a port, got {url.geturl()!r}")
            host, port = url.hostname, url.port
        proxy = FaultProxy(host, port)
        proxies.append(proxy)
        await proxy.start()
        return proxy

    yield start
    for proxy in reversed(proxies):
        await proxy.close()
