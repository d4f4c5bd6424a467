"""The reference server over TLS (wss://), over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from nexus_reactive.errors import ConfigError
from nexus_reactive.server import create_app, serve, server_ssl_context

from .test_server import KEY, TIMEOUT, assert_usable, wait_until
from .tlsutil import make_tls

# --- TLS ---------------------------------------------------------------------------------


async def test_serve_over_tls_with_cert_files(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    tls = make_tls(tmp_path)
    stop = asyncio.Event()
    urls: list[str] = []
    server = asyncio.create_task(
        serve(
            "127.0.0.1",
            0,
            api_keys=KEY,
            certfile=tls.server_cert,
            keyfile=tls.server_key,
            stop=stop,
            on_listening=urls.append,
        )
    )
    try:
        await wait_until(lambda: bool(urls) or server.done())
        assert urls, server
        url = urls[0]
        assert url.startswith("wss://127.0.0.1:")
        port = url.rsplit(":", 1)[1]
        for host in ("127.0.0.1", "localhost"):
            async with session.ws_connect(
                f"wss://{host}:{port}/", headers={"x-api-key": KEY}, ssl=tls.client_context()
            ) as ws:
                await assert_usable(ws)
        # Without trusting the CA, the certificate is refused.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.ws_connect(url, headers={"x-api-key": KEY})
        # Plain ws:// to the TLS port does not get a WebSocket either.
        with pytest.raises(aiohttp.ClientError):
            await session.ws_connect(f"ws://127.0.0.1:{port}/", headers={"x-api-key": KEY})
    finally:
        stop.set()
        await asyncio.wait_for(server, TIMEOUT)


async def test_serve_over_tls_with_a_context(
    tmp_path: Path,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
    session: aiohttp.ClientSession,
) -> None:
    tls = make_tls(tmp_path)
    server = await aiohttp_server(
        create_app(api_keys=KEY), ssl=server_ssl_context(tls.server_cert, tls.server_key)
    )
    url = f"wss://localhost:{server.port}/"
    async with session.ws_connect(url, headers={"x-api-key": KEY}, ssl=tls.client_context()) as ws:
        await assert_usable(ws)


async def test_tls_options_are_checked_before_binding(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    context = tls.server_context()
    never = asyncio.Event()
    with pytest.raises(ConfigError, match="not both"):
        await serve(port=0, api_keys=KEY, ssl_context=context, certfile=tls.server_cert, stop=never)
    with pytest.raises(ConfigError, match="keyfile needs certfile"):
        await serve(port=0, api_keys=KEY, keyfile=tls.server_key, stop=never)
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="does not exist"):
        server_ssl_context(missing)
    # A key that is not the certificate's: named, not quoted.
    (tmp_path / "other").mkdir()
    other = make_tls(tmp_path / "other")
    with pytest.raises(ConfigError) as info:
        server_ssl_context(tls.server_cert, other.server_key)
    assert str(other.server_key) in str(info.value)
    assert "PRIVATE KEY-----\n" not in str(info.value)
    key_body = other.server_key.read_text().splitlines()[1]
    assert key_body not in str(info.value)
