"""The reference server's closes: the code a client receives is the code the server
logs and counts (``ServerStats.closes_sent``), for every close of docs/protocol.md's
table that the reference server sends.

Real loopback sockets, with aiohttp's client as the raw peer: it answers a server's
close with 1000, which is what the server's socket then reports as its close code,
so a log line built from that would say 1000 where 4406 was sent. A close the client
starts is logged as the client's; a connection dropped without a close frame, as lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import codec
from nexus_reactive.messages import ChallengeMessage
from nexus_reactive.negotiation import offer
from nexus_reactive.signing import generate_keypair, public_key_hex, sign_challenge
from nexus_reactive.testing import FaultProxy

from .conftest import KEY, MakeServer
from .test_server import TIMEOUT, ask, assert_usable, connect, recv, stats, wait_until

SERVER_LOG = "nexus_reactive.server"
Peer = aiohttp.ClientWebSocketResponse
Scenario = Callable[[Peer, TestServer], Awaitable[None]]

STOPPING: list[asyncio.Task[None]] = []
SERVER_KEY = generate_keypair()
CLIENT_KEY = generate_keypair()


def auth(challenge: dict[str, Any], key: Ed25519PrivateKey, **fields: str) -> str:
    text = challenge["payload"]["challenge"]
    payload = {
        "pubkey": public_key_hex(key),
        "signature": sign_challenge(key, text),
        "challenge": text,
        **fields,
    }
    return json.dumps({"type": "auth", "id": challenge["id"], "payload": payload})


async def wrong_signature(ws: Peer, server: TestServer) -> None:
    challenge = await recv(ws)
    signed = json.loads(auth(challenge, CLIENT_KEY))
    signed["payload"]["signature"] = sign_challenge(CLIENT_KEY, "another challenge")
    await ws.send_str(json.dumps(signed))


async def silent(ws: Peer, server: TestServer) -> None:
    await recv(ws)  # the challenge, never answered


async def stranger(ws: Peer, server: TestServer) -> None:
    await ws.send_str(auth(await recv(ws), generate_keypair()))


async def plain_frames(ws: Peer, server: TestServer) -> None:
    """Authenticates without asking for the signed frames the server requires."""
    await ws.send_str(auth(await recv(ws), CLIENT_KEY))


async def unsigned_after_agreeing(ws: Peer, server: TestServer) -> None:
    """Agrees on signed frames, then sends a plain frame."""
    challenge = await recv(ws)
    decoded = codec.decode(json.dumps(challenge))
    assert isinstance(decoded, ChallengeMessage)
    agreed = offer(decoded.payload, CLIENT_KEY, SERVER_KEY.public_key(), encrypt=False)
    await ws.send_str(auth(challenge, CLIENT_KEY, **agreed.fields()))
    assert (await recv(ws))["type"] == "signed"  # the signed auth_ok
    await ask(ws, "unsigned", "u1")


async def flood(ws: Peer, server: TestServer) -> None:
    for n in range(6):
        await ask(ws, "flood", f"f{n}")


async def too_big(ws: Peer, server: TestServer) -> None:
    await ask(ws, "x" * 2048, "big")


async def shutdown(ws: Peer, server: TestServer) -> None:
    await assert_usable(ws)
    # Awaited by the test once the close it sends has come.
    STOPPING.append(asyncio.get_running_loop().create_task(server.close()))


SCENARIOS = [
    pytest.param({"require_signature": True}, wrong_signature, 4401, id="4401-bad-signature"),
    pytest.param({"require_signature": True, "auth_timeout": 0.05}, silent, 4401, id="4401-late"),
    pytest.param(
        {"allowed_pubkeys": [public_key_hex(CLIENT_KEY)]}, stranger, 4403, id="4403-not-allowed"
    ),
    pytest.param(
        {"signing_key": SERVER_KEY, "require_frames": "signed"},
        plain_frames,
        4406,
        id="4406-frames-refused",
    ),
    pytest.param({"signing_key": SERVER_KEY}, unsigned_after_agreeing, 4409, id="4409-bad-frame"),
    pytest.param(
        {"rate_limit": 0.5, "rate_burst": 1, "abuse_threshold": 3, "clock": lambda: 0.0},
        flood,
        4429,
        id="4429-flood",
    ),
    pytest.param({"max_message_size": 1024}, too_big, 1009, id="1009-too-big"),
    pytest.param({}, shutdown, 1001, id="1001-shutdown"),
]


async def close_code_received(ws: Peer) -> int:
    """Skip text frames until the close; return its code."""
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type is not WSMsgType.TEXT:
            break
    assert msg.type is WSMsgType.CLOSE, msg
    assert isinstance(msg.data, int)
    return msg.data


def closes_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The server's log lines about how its connections ended."""
    said = [r.getMessage() for r in caplog.records if r.name == SERVER_LOG]
    return [line for line in said if " closed " in line or " lost " in line]


@pytest.mark.parametrize(("options", "scenario", "code"), SCENARIOS)
async def test_the_server_logs_and_counts_the_close_code_it_sent(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    options: dict[str, Any],
    scenario: Scenario,
    code: int,
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = await make_server(**options)
    async with await connect(session, server) as ws:
        await scenario(ws, server)
        assert await close_code_received(ws) == code
        assert ws.close_code == code
    while STOPPING:
        await STOPPING.pop()
    await wait_until(lambda: stats(server).connections_open == 0)
    assert closes_logged(caplog) == [
        f"connection from 127.0.0.1 closed by the server (code {code})"
    ]
    assert stats(server).closes_sent == {code: 1}


async def test_a_close_the_client_starts_is_logged_as_the_clients_and_not_counted(
    make_server: MakeServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = await make_server()
    async with await connect(session, server) as ws:
        await assert_usable(ws)
        await ws.close(code=4000, message=b"done")
    await wait_until(lambda: stats(server).connections_open == 0)
    assert closes_logged(caplog) == ["connection from 127.0.0.1 closed by the client (code 4000)"]
    assert stats(server).closes_sent == {}


async def test_a_connection_dropped_without_a_close_frame_is_logged_as_lost(
    make_server: MakeServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=SERVER_LOG)
    server = await make_server()
    assert server.port is not None
    async with FaultProxy("127.0.0.1", server.port) as proxy:
        ws = await session.ws_connect(proxy.url(), headers={"x-api-key": KEY})
        await assert_usable(ws)
        await proxy.cut()  # both TCP connections go; no close frame either way
        await wait_until(lambda: stats(server).connections_open == 0)
        await ws.close()
    assert closes_logged(caplog) == ["connection from 127.0.0.1 lost (no close frame)"]
    assert stats(server).closes_sent == {}
