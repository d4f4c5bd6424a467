"""The client against the reference server's security features, over real sockets:
key-pair authentication, TLS, rate limits and streamed answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nexus_reactive import (
    AuthenticationError,
    ConnectionState,
    NexusConnectionError,
    NexusError,
    Phase,
    ServerError,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.server import EchoEngine, create_app
from nexus_reactive.server.runner import server_ssl_context
from nexus_reactive.signing import generate_keypair, public_key_hex, write_keypair

from .conftest import KEY, Nexus, client_config
from .faults import FaultProxy
from .tlsutil import make_tls
from .waiting import EVENTUALLY, wait_for

SEED_HEX = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


@pytest.mark.parametrize("form", ["hex seed", "pem file", "key object"])
async def test_key_pair_auth_holds_the_outbox_until_auth_ok(
    start_nexus: Any, tmp_path: Path, form: str
) -> None:
    key = generate_keypair()
    server = await start_nexus(allowed_pubkeys=[public_key_hex(key)])
    if form == "pem file":
        write_keypair(tmp_path / "id", key)
        signing_key: Any = tmp_path / "id"
    elif form == "hex seed":
        from cryptography.hazmat.primitives import serialization

        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        signing_key = raw.hex()
    else:
        signing_key = key
    service = WebSocketService(server.config(signing_key=signing_key))
    phases: list[Phase] = []
    service.state.subscribe(lambda s: phases.append(s.phase))
    errors: list[Any] = []
    service.on_message("error", errors.append)
    queued = [service.send_query(f"before auth {i}") for i in range(3)]
    await service.connect()
    assert phases[:4] == [
        Phase.DISCONNECTED,
        Phase.CONNECTING,
        Phase.AUTHENTICATING,
        Phase.CONNECTED,
    ]
    assert (await service.ask("after auth")).answer
    await wait_for(lambda: server.stats.asks_received == 4)
    assert errors == []  # nothing was sent before auth_ok (it would be `unauthenticated`)
    assert server.stats.auth_ok == 1 and len(queued) == 3
    await service.close()


async def test_a_key_the_server_does_not_allow_is_fatal(start_nexus: Any) -> None:
    allowed = generate_keypair()
    server = await start_nexus(allowed_pubkeys=[public_key_hex(allowed)])
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        service = WebSocketService(server.config(url=proxy.url(), signing_key=SEED_HEX))
        with pytest.raises(AuthenticationError) as info:
            await service.connect()
        assert "not retrying" in str(info.value).lower()
        assert SEED_HEX not in str(info.value)
        assert proxy.connections == 1
        assert service.state.value.failed
        await service.close()


async def test_no_challenge_within_auth_timeout_is_fatal(nexus: Nexus) -> None:
    service = WebSocketService(nexus.config(signing_key=SEED_HEX, auth_timeout=0.2))
    with pytest.raises(AuthenticationError, match="no challenge"):
        await service.connect()
    assert service.state.value.failed
    await service.close()


async def test_wss_with_a_trusted_ca(aiohttp_server: Any, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    server = await aiohttp_server(
        create_app(api_keys=KEY), ssl=server_ssl_context(tls.server_cert, tls.server_key)
    )
    for host in ("localhost", "127.0.0.1"):
        url = f"wss://{host}:{server.port}/"
        async with WebSocketService(client_config(url, ssl=tls.client_context())) as service:
            assert (await service.ask("over tls")).answer


async def test_wss_with_an_untrusted_certificate_fails_fatally(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    tls = make_tls(tmp_path)
    server = await aiohttp_server(
        create_app(api_keys=KEY), ssl=server_ssl_context(tls.server_cert, tls.server_key)
    )
    states: list[ConnectionState] = []
    service = WebSocketService(client_config(f"wss://localhost:{server.port}/"))
    service.state.subscribe(states.append)
    with pytest.raises(NexusConnectionError, match="certificate") as info:
        await service.connect()
    assert not info.value.retryable
    assert "ssl=" in str(info.value)  # says what to do
    assert sum(s.phase is Phase.CONNECTING for s in states) == 1  # no retries
    await service.close()


async def test_wss_with_a_wrong_host_name_fails(aiohttp_server: Any, tmp_path: Path) -> None:
    tls = make_tls(tmp_path)  # valid for localhost and 127.0.0.1 only
    server = await aiohttp_server(
        create_app(api_keys=KEY),
        host="127.0.0.2",
        ssl=server_ssl_context(tls.server_cert, tls.server_key),
    )
    config = client_config(f"wss://127.0.0.2:{server.port}/", ssl=tls.client_context())
    service = WebSocketService(config)
    with pytest.raises(NexusConnectionError, match="certificate"):
        await service.connect()
    await service.close()


async def test_ask_stream_yields_pieces_in_order(start_nexus: Any) -> None:
    server = await start_nexus(engine=EchoEngine(stream=True))
    async with WebSocketService(server.config()) as service:
        pieces: list[str] = []
        done = asyncio.Event()
        service.ask_stream("tell me something long").subscribe(pieces.append, on_completed=done.set)
        await asyncio.wait_for(done.wait(), EVENTUALLY)
        final = await service.ask("tell me something long")
        assert len(pieces) > 1
        assert "".join(pieces) == final.answer
        assert server.stats.chunks_sent >= len(pieces)


async def test_store_shows_a_streamed_answer_then_the_final_one(start_nexus: Any) -> None:
    from nexus_reactive import PartialResponse, ResponseMessage

    server = await start_nexus(engine=EchoEngine(stream=True, delay=0.01))
    async with use_websocket(server.config()) as store:
        kinds: list[str] = []
        store.messages.subscribe(lambda h: kinds.append(type(h[-1]).__name__) if h else None)
        store.send_message("stream this answer to me please")
        # What the subscriber saw, not messages.value: the value is current at once, and
        # its subscribers hear of it once per loop tick (a later one than the poll's).
        await wait_for(lambda: bool(kinds) and kinds[-1] == "ResponseMessage")
        assert isinstance(store.messages.value[-1], ResponseMessage)
        assert "PartialResponse" in kinds
        assert len(store.messages.value) == 1
        assert not any(isinstance(m, PartialResponse) for m in store.messages.value)


async def test_the_client_waits_as_a_rate_limiting_server_says(start_nexus: Any) -> None:
    # The server's clock is injected: it moves on by what the server told the client
    # to wait, when the client hears it. With a real clock, a machine slow enough
    # between two frames of the burst would refill the bucket and limit nothing.
    now = [0.0]
    server = await start_nexus(rate_limit=20.0, rate_burst=2, clock=lambda: now[0])
    async with WebSocketService(server.config()) as service:
        errors: list[NexusError] = []

        def on_error(error: NexusError) -> None:
            errors.append(error)
            if isinstance(error, ServerError) and error.retry_after is not None:
                now[0] += error.retry_after

        service.errors.subscribe(on_error)
        answers = await asyncio.gather(*(service.ask(f"burst {i}") for i in range(8)))
    assert [a.answer for a in answers] == [f"You asked: burst {i}" for i in range(8)]
    limited = [e for e in errors if isinstance(e, ServerError) and e.code == "rate_limited"]
    assert limited and all(e.retry_after is not None for e in limited)
    assert server.stats.rate_limited == len(limited)
    assert server.stats.abuse_closes == 0
