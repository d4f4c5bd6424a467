"""The reference server's defences: key-pair authentication (size and rate limits:
test_server_limits.py; TLS: test_server_tls.py).

Real loopback sockets, with aiohttp's client as the raw peer; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.errors import ConfigError
from nexus_reactive.server import CLOSE_AUTH_FAILED, CLOSE_FORBIDDEN, create_app
from nexus_reactive.signing import generate_keypair, public_key_hex, sign_challenge

from .conftest import MakeServer
from .test_server import KEY, TIMEOUT, ask, assert_usable, connect, recv, send, stats, wait_until


async def expect_close(ws: aiohttp.ClientWebSocketResponse, code: int) -> str:
    """Receive until the close frame; return its reason. Text frames on the way are skipped."""
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type is WSMsgType.TEXT:
            continue
        assert msg.type is WSMsgType.CLOSE, msg
        assert msg.data == code, msg
        return str(msg.extra or "")


async def frames_until_close(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], int | None, str]:
    frames: list[dict[str, Any]] = []
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type is WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
            continue
        assert msg.type is WSMsgType.CLOSE, msg
        return frames, msg.data, str(msg.extra or "")


async def auth_frame(
    ws: aiohttp.ClientWebSocketResponse, key: Ed25519PrivateKey
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read the challenge; return it and a correctly signed auth answering it."""
    challenge = await recv(ws)
    assert challenge["type"] == "challenge"
    text = challenge["payload"]["challenge"]
    auth = {
        "type": "auth",
        "id": challenge["id"],
        "payload": {
            "pubkey": public_key_hex(key),
            "signature": sign_challenge(key, text),
            "challenge": text,
        },
    }
    return challenge, auth


async def authenticate(ws: aiohttp.ClientWebSocketResponse, key: Ed25519PrivateKey) -> None:
    challenge, auth = await auth_frame(ws, key)
    await ws.send_str(json.dumps(auth))
    reply = await recv(ws)
    assert reply == {
        "type": "auth_ok",
        "id": challenge["id"],
        "payload": {"pubkey": public_key_hex(key)},
    }


# --- key-pair authentication -------------------------------------------------------------


async def test_the_challenge_is_the_first_frame_and_fresh_each_time(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True)
    seen: set[str] = set()
    for _ in range(2):
        async with await connect(session, server) as ws:
            challenge = await recv(ws)
            assert challenge["type"] == "challenge"
            assert 0 < len(challenge["id"]) <= 128
            text = challenge["payload"]["challenge"]
            assert len(text) >= 32
            seen.add(text)
    assert len(seen) == 2


async def test_a_valid_auth_gets_auth_ok_and_then_asks_are_served(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True)
    key = generate_keypair()
    async with await connect(session, server) as ws:
        await authenticate(ws, key)
        await assert_usable(ws)
        # A second auth on an authenticated connection is a bad request, not a crash.
        await send(ws, "auth", "again", {"pubkey": "p", "signature": "s", "challenge": "c"})
        reply = await recv(ws)
        assert reply["payload"]["code"] == "bad_request"
        assert "already authenticated" in reply["payload"]["message"]
        await assert_usable(ws)
    assert stats(server).auth_ok == 1


async def test_frames_before_auth_are_unauthenticated_and_not_processed(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True)
    key = generate_keypair()
    async with await connect(session, server) as ws:
        challenge, auth = await auth_frame(ws, key)
        await ask(ws, "too early", "early")
        reply = await recv(ws)
        assert reply["type"] == "error"
        assert reply["id"] == "early"
        assert reply["payload"]["code"] == "unauthenticated"
        assert challenge["id"] in reply["payload"]["message"]
        for frame in ("{not json", '{"type": "subscribe", "id": "s", "payload": 1}'):
            await ws.send_str(frame)
            reply = await recv(ws)
            assert reply["payload"]["code"] == "unauthenticated"
        await ws.send_bytes(b"binary")
        assert (await recv(ws))["payload"]["code"] == "unauthenticated"
        assert stats(server).asks_received == 0
        assert stats(server).engine_calls == 0
        # The client can still authenticate after all that.
        await ws.send_str(json.dumps(auth))
        assert (await recv(ws))["type"] == "auth_ok"
        await assert_usable(ws)


def _tampered_signature(auth: dict[str, Any]) -> None:
    signature = auth["payload"]["signature"]
    auth["payload"]["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]


def _other_key_signature(auth: dict[str, Any]) -> None:
    auth["payload"]["signature"] = sign_challenge(generate_keypair(), auth["payload"]["challenge"])


def _wrong_challenge(auth: dict[str, Any]) -> None:
    auth["payload"]["challenge"] += "x"


def _wrong_id(auth: dict[str, Any]) -> None:
    auth["id"] = "not-the-challenge-id"


def _junk_pubkey(auth: dict[str, Any]) -> None:
    auth["payload"]["pubkey"] = "zz" * 32


def _upper_case_signature(auth: dict[str, Any]) -> None:
    auth["payload"]["signature"] = auth["payload"]["signature"].upper()


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_tampered_signature, "signature does not verify"),
        (_other_key_signature, "signature does not verify"),
        (_upper_case_signature, "signature does not verify"),
        (_wrong_challenge, "challenge"),
        (_wrong_id, "id"),
        (_junk_pubkey, "pubkey"),
    ],
    ids=["tampered", "other-key", "upper-case", "wrong-challenge", "wrong-id", "junk-pubkey"],
)
async def test_a_bad_auth_is_auth_failed_then_close_4401_and_the_server_goes_on(
    make_server: MakeServer,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    tamper: Callable[[dict[str, Any]], None],
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="nexus_reactive")
    server = await make_server(require_signature=True)
    key = generate_keypair()
    async with await connect(session, server) as ws:
        _, auth = await auth_frame(ws, key)
        tamper(auth)
        await ws.send_str(json.dumps(auth))
        reply = await recv(ws)
        assert reply["type"] == "error"
        assert reply["id"] == auth["id"]
        assert reply["payload"]["code"] == "auth_failed"
        assert reason in reply["payload"]["message"]
        assert auth["payload"]["signature"] not in reply["payload"]["message"]
        assert await expect_close(ws, CLOSE_AUTH_FAILED) == "authentication failed"
    assert stats(server).auth_failed == 1
    assert stats(server).engine_calls == 0
    # The log says why, and holds neither the signature nor the API key.
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert reason in logged
    assert auth["payload"]["signature"] not in logged
    assert auth["payload"]["signature"].lower() not in logged
    assert KEY not in logged
    # Nothing broke: the next client is served.
    async with await connect(session, server) as ws:
        await authenticate(ws, key)
        await assert_usable(ws)


async def test_allowed_pubkeys_let_in_listed_keys_and_forbid_others_with_4403(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    allowed, stranger = generate_keypair(), generate_keypair()
    # Any case is accepted in the configuration; implied require_signature.
    server = await make_server(allowed_pubkeys=[public_key_hex(allowed).upper()])
    async with await connect(session, server) as ws:
        await authenticate(ws, allowed)
        await assert_usable(ws)
    async with await connect(session, server) as ws:
        _, auth = await auth_frame(ws, stranger)
        await ws.send_str(json.dumps(auth))
        reply = await recv(ws)
        assert reply["payload"]["code"] == "auth_failed"
        assert "not allowed" in reply["payload"]["message"]
        assert await expect_close(ws, CLOSE_FORBIDDEN) == "forbidden"
    assert stats(server).auth_ok == 1
    assert stats(server).auth_failed == 1


async def test_no_auth_in_time_closes_with_4401(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True, auth_timeout=0.05)
    async with await connect(session, server) as ws:
        frames, code, reason = await frames_until_close(ws)
    assert code == CLOSE_AUTH_FAILED
    assert reason == "authentication timed out"
    assert [f["type"] for f in frames] == ["challenge", "error"]
    assert frames[1]["id"] == ""
    assert frames[1]["payload"]["code"] == "unauthenticated"
    await wait_until(lambda: stats(server).connections_open == 0)
    assert stats(server).auth_failed == 1


async def test_chatter_does_not_extend_the_auth_deadline(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True, auth_timeout=0.2)
    async with await connect(session, server) as ws:
        await recv(ws)  # the challenge
        # Keep talking until the server hangs up; every frame is refused meanwhile.
        while True:
            await ask(ws, "let me in", "n")
            msg = await ws.receive(timeout=TIMEOUT)
            if msg.type is not WSMsgType.TEXT:
                break
            reply = json.loads(msg.data)
            assert reply["payload"]["code"] == "unauthenticated"
        assert msg.type is WSMsgType.CLOSE
        assert msg.data == CLOSE_AUTH_FAILED
    assert stats(server).asks_received == 0


async def test_the_same_ask_id_from_two_signing_keys_is_two_questions(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(require_signature=True)
    first, second = generate_keypair(), generate_keypair()
    for key in (first, second, first):
        async with await connect(session, server) as ws:
            await authenticate(ws, key)
            await ask(ws, "same id", "shared")
            assert (await recv(ws))["type"] == "response"
    assert stats(server).engine_calls == 2
    assert stats(server).asks_replayed == 1


async def test_without_require_signature_there_is_no_challenge(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        # The first frame the client sees is the reply to its own ask.
        await assert_usable(ws)


def test_bad_allowed_pubkeys_are_config_errors_that_do_not_echo_them() -> None:
    secret_looking = "ab" * 31  # 62 hex digits: could be a mistyped private seed
    with pytest.raises(ConfigError) as info:
        create_app(api_keys=KEY, allowed_pubkeys=[secret_looking])
    assert "64 hex digits" in str(info.value)
    assert secret_looking not in str(info.value)
    with pytest.raises(ConfigError, match="empty"):
        create_app(api_keys=KEY, allowed_pubkeys=[])
    with pytest.raises(ValueError, match="auth_timeout"):
        create_app(api_keys=KEY, require_signature=True, auth_timeout=0)
