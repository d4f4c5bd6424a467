"""OpenSSL's "record layer failure" on a ``wss://`` URL: since OpenSSL 3.2 the reason
Python sees for a plain server's answer to the TLS hello ("wrong version number" before),
and also for a TLS record damaged on the way, which the next attempt may not meet. So it
alone is not definitive: the port is asked (a TLS hello; the first bytes of the answer)
and the error is fatal with "try ws://" only when the answer is not TLS.

The OpenSSL here may predate 3.2, so the handshake's error is made as Python would raise
it; what the probe asks, it asks real servers on loopback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from nexus_reactive.failures import failure
from nexus_reactive.tls_hints import scheme_hint

from .conftest import Nexus, ServerFactory

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def record_layer_failure() -> ssl.SSLError:
    """The error OpenSSL 3.2+ gives Python for a refused record, as Python raises it."""
    error = ssl.SSLError(1, "[SSL: RECORD_LAYER_FAILURE] record layer failure (_ssl.c:1000)")
    error.reason = "RECORD_LAYER_FAILURE"
    error.library = "SSL"
    return error


async def hint(url: str) -> object:
    deadline = asyncio.get_running_loop().time() + 5.0
    return await scheme_hint(record_layer_failure(), url, deadline)


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"wss://127.0.0.1:{server.sockets[0].getsockname()[1]}/"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_a_plain_server_s_answer_is_fatal_with_try_ws(nexus: Nexus) -> None:
    wss = nexus.url.replace("ws://", "wss://")
    error = await hint(wss)
    assert isinstance(error, Exception)
    said = str(error)
    assert "the TLS handshake failed (record layer failure: the server's answer is not TLS)" in said
    assert f"the server may not use TLS: try ws:// ({nexus.url}). Not retrying." in said
    assert not getattr(error, "retryable", True)  # the same answer every time
    assert nexus.stats.connections_total == 0


async def test_a_tls_server_s_answer_is_retried_without_the_hint(
    start_nexus: ServerFactory,
) -> None:
    """The server speaks TLS: a record was damaged or refused on the way (a flaky proxy,
    say), which the next attempt may not meet."""
    nexus = await start_nexus(tls=True)
    error = await hint(nexus.url)
    assert isinstance(error, Exception)
    said = str(error)
    assert "though the server answers in TLS" in said
    assert "ws://" not in said.replace(nexus.url, "") and "Not retrying" not in said
    assert getattr(error, "retryable", False)


async def test_no_answer_is_retried_with_the_hint_hedged(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A port that hangs up on the hello tells nothing: the attempt's own failure stands,
    retried, with the hint for the case where every attempt says the same."""
    hellos: list[bytes] = []

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hellos.append(await reader.read(1))
        writer.close()

    url = await raw_server(hang_up)
    assert await hint(url) is None
    assert hellos == [b"\x16"]  # asked with a TLS hello, nothing else
    error = failure(record_layer_failure(), url, None, 10.0)
    assert error.retryable
    plain = url.replace("wss://", "ws://")
    assert str(error) == (
        f"cannot connect to {url}: the TLS handshake failed (record layer failure): if "
        f"every attempt says so, the server may not use TLS: try ws:// ({plain})"
    )


async def test_a_server_that_never_answers_holds_the_probe_to_the_attempt_s_deadline(
    raw_server: Callable[[Handler], Awaitable[str]],
) -> None:
    release = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    url = await raw_server(stall)
    deadline = asyncio.get_running_loop().time() + 0.2
    assert await scheme_hint(record_layer_failure(), url, deadline) is None
    release.set()


@pytest.mark.parametrize("reason", ["WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG"])
async def test_the_definitive_reasons_need_no_probe(
    reason: str, raw_server: Callable[[Handler], Awaitable[str]]
) -> None:
    connections: list[int] = []

    async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.close()

    url = await raw_server(count)
    error = record_layer_failure()
    error.reason = reason
    deadline = asyncio.get_running_loop().time() + 5.0
    assert await scheme_hint(error, url, deadline) is None
    said = failure(error, url, None, 10.0)
    assert not said.retryable and "Not retrying" in str(said)
    assert connections == []
