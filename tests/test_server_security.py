"""The reference server's defences: key-pair authentication, TLS, size limits, rate limits.

Real loopback sockets, with aiohttp's client as the raw peer; nothing is mocked.
Rate-limit tests freeze the server's clock (``create_app(clock=...)``) so that no
token refills behind the test's back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.errors import ConfigError
from nexus_reactive.server import (
    CLOSE_AUTH_FAILED,
    CLOSE_FORBIDDEN,
    CLOSE_RATE_LIMITED,
    STATE_KEY,
    RateLimiter,
    TokenBucket,
    create_app,
    serve,
    server_ssl_context,
)
from nexus_reactive.signing import generate_keypair, public_key_hex, sign_challenge

from .conftest import MakeServer
from .test_server import (
    KEY,
    TIMEOUT,
    GatedEngine,
    ask,
    assert_usable,
    connect,
    recv,
    send,
    stats,
    wait_until,
)
from .tlsutil import make_tls


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


# --- size limits -------------------------------------------------------------------------


def test_the_default_limits() -> None:
    state = create_app(api_keys=KEY)[STATE_KEY]
    assert state.max_message_size == 4 * 1024 * 1024
    assert state.max_query_length == 16_384
    assert state.max_team_id_length == 128


async def test_query_and_team_id_lengths_are_bounded(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server(max_query_length=12, max_team_id_length=4)
    async with await connect(session, server) as ws:
        await ask(ws, "x" * 12, "at-limit")
        assert (await recv(ws))["type"] == "response"
        await ask(ws, "x" * 13, "long-query")
        reply = await recv(ws)
        assert reply["id"] == "long-query"
        assert reply["payload"]["code"] == "bad_request"
        assert "max_query_length" in reply["payload"]["message"]
        assert "13 characters" in reply["payload"]["message"]
        assert "of 12" in reply["payload"]["message"]
        await send(ws, "ask", "team-ok", {"query": "q", "team_id": "abcd"})
        assert (await recv(ws))["type"] == "response"
        await send(ws, "ask", "long-team", {"query": "q", "team_id": "abcde"})
        reply = await recv(ws)
        assert reply["id"] == "long-team"
        assert reply["payload"]["code"] == "bad_request"
        assert "max_team_id_length" in reply["payload"]["message"]
        await assert_usable(ws)
    assert stats(server).engine_calls == 3  # at-limit, team-ok, the probe


async def test_an_id_over_128_characters_is_a_bad_request(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    server = await make_server()
    async with await connect(session, server) as ws:
        await ask(ws, "q", "i" * 129)
        reply = await recv(ws)
        assert reply["payload"]["code"] == "bad_request"
        assert "128" in reply["payload"]["message"]
        await assert_usable(ws)
    assert stats(server).engine_calls == 1


async def test_a_compressed_frame_that_inflates_over_the_limit_closes_with_1009(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    limit = 1024
    server = await make_server(max_message_size=limit)
    headers = {"x-api-key": KEY}
    async with session.ws_connect(server.make_url("/"), headers=headers, compress=15) as ws:
        assert ws.compress == 15  # permessage-deflate was negotiated
        await assert_usable(ws)
        # ~64 KiB of JSON that deflates to far less than the limit on the wire.
        bomb = json.dumps({"type": "ask", "id": "bomb", "payload": {"query": "x" * 65_536}})
        assert len(zlib.compress(bomb.encode())) < limit < len(bomb)
        await ws.send_str(bomb)
        assert await expect_close(ws, 1009) is not None
    await wait_until(lambda: stats(server).connections_open == 0)
    async with await connect(session, server) as ws:
        await assert_usable(ws)


# --- rate limiting: the bucket, with a fake clock ----------------------------------------


def test_token_bucket_burst_then_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.try_take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take(0.0) == pytest.approx(0.5)  # refused: nothing taken
    assert bucket.try_take(0.25) == pytest.approx(0.25)
    assert bucket.try_take(0.5) == 0.0
    assert bucket.try_take(0.5) == pytest.approx(0.5)
    # Idle time fills the bucket up to the burst, never beyond.
    assert [bucket.try_take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take(100.0) > 0


def test_token_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate=1.0, burst=1, now=10.0)
    assert bucket.try_take(10.0) == 0.0
    assert bucket.try_take(5.0) == pytest.approx(1.0)
    assert bucket.try_take(11.0) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (float("inf"), 1), (1.0, 0)])
def test_token_bucket_rejects_bad_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked below
        TokenBucket(rate, burst, 0.0)
    with pytest.raises(ValueError, match=r"rate|burst"):
        RateLimiter(rate, burst)


def test_rate_limiter_keeps_one_bucket_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(2.5, clock=lambda: now[0])
    assert limiter.burst == 3  # ceil(rate)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.4)
    assert limiter.acquire("b") == 0.0
    now[0] = 0.4
    assert limiter.acquire("a") == 0.0
    assert "keys=2" in repr(limiter)


# --- rate limiting over the wire ---------------------------------------------------------


async def test_over_the_limit_is_rate_limited_with_retry_after_and_not_processed(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    server = await make_server(
        api_keys=[KEY, "other-key"], rate_limit=1.0, rate_burst=2, clock=lambda: now[0]
    )
    first = await connect(session, server)
    second = await connect(session, server)
    try:
        for n in range(2):
            await ask(first, "q", f"ok{n}")
            assert (await recv(first))["type"] == "response"
        # The bucket is the key's, shared by its connections.
        await ask(second, "q", "limited")
        reply = await recv(second)
        assert reply["type"] == "error"
        assert reply["id"] == "limited"
        assert reply["payload"]["code"] == "rate_limited"
        assert reply["payload"]["retry_after"] == 1.0
        assert "1 messages per second, burst 2" in reply["payload"]["message"]
        assert stats(server).asks_received == 2
        # Another key has its own bucket.
        async with await connect(session, server, key="other-key") as third:
            await assert_usable(third)
        # Once the time has passed, the same message goes through.
        now[0] += 1.0
        await ask(second, "q", "limited")
        assert (await recv(second))["type"] == "response"
    finally:
        await first.close()
        await second.close()
    assert stats(server).rate_limited == 1
    assert stats(server).engine_calls == 4


async def test_flooding_closes_with_4429_and_retry_after(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    server = await make_server(
        rate_limit=0.5, rate_burst=1, abuse_threshold=3, clock=lambda: now[0]
    )
    async with await connect(session, server) as ws:
        await assert_usable(ws)
        for n in range(6):
            await ask(ws, "flood", f"f{n}")
        frames, code, reason = await frames_until_close(ws)
    assert code == CLOSE_RATE_LIMITED
    assert reason == "retry_after=2.0"
    per_message = [f for f in frames if f["id"]]
    assert [f["id"] for f in per_message] == ["f0", "f1", "f2"]
    assert all(f["payload"]["code"] == "rate_limited" for f in per_message)
    assert all(f["payload"]["retry_after"] == 2.0 for f in per_message)
    whole = [f for f in frames if not f["id"]]
    assert len(whole) == 1
    assert whole[0]["payload"]["code"] == "rate_limited"
    assert whole[0]["payload"]["retry_after"] == 2.0
    assert "more than 3" in whole[0]["payload"]["message"]
    await wait_until(lambda: stats(server).connections_open == 0)
    assert stats(server).abuse_closes == 1
    assert stats(server).asks_received == 1


async def test_an_admitted_message_resets_the_abuse_count(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    server = await make_server(
        rate_limit=1.0, rate_burst=1, abuse_threshold=2, clock=lambda: now[0]
    )
    async with await connect(session, server) as ws:
        for round_ in range(3):
            await ask(ws, "q", f"ok{round_}")
            assert (await recv(ws))["type"] == "response"
            for n in range(2):  # at the threshold, not over it
                await ask(ws, "q", f"no{round_}-{n}")
                assert (await recv(ws))["payload"]["code"] == "rate_limited"
            now[0] += 1.0
        assert not ws.closed
    assert stats(server).abuse_closes == 0


async def test_the_auth_frame_is_not_rate_limited_but_other_frames_are(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    server = await make_server(
        require_signature=True, rate_limit=1.0, rate_burst=1, clock=lambda: now[0]
    )
    key = generate_keypair()
    async with await connect(session, server) as ws:
        _, auth = await auth_frame(ws, key)
        await ask(ws, "early", "e1")  # takes the only token, then is refused as unauthenticated
        assert (await recv(ws))["payload"]["code"] == "unauthenticated"
        await ask(ws, "early", "e2")
        assert (await recv(ws))["payload"]["code"] == "rate_limited"
        await ws.send_str(json.dumps(auth))
        assert (await recv(ws))["type"] == "auth_ok"
        await ask(ws, "now", "n1")
        assert (await recv(ws))["payload"]["code"] == "rate_limited"
        now[0] += 1.0
        await ask(ws, "now", "n1")
        assert (await recv(ws))["type"] == "response"


async def test_rate_limited_asks_do_not_disturb_ones_in_flight(
    make_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    now = [0.0]
    engine = GatedEngine()
    server = await make_server(engine=engine, rate_limit=1.0, rate_burst=1, clock=lambda: now[0])
    async with await connect(session, server) as ws:
        await ask(ws, "slow", "s")
        await wait_until(lambda: engine.calls == ["slow"])
        await ask(ws, "fast", "f")
        assert (await recv(ws))["payload"]["code"] == "rate_limited"
        engine.gate.set()
        reply = await recv(ws)
        assert reply["id"] == "s"
        assert reply["type"] == "response"


def test_rate_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        create_app(api_keys=KEY, rate_limit=0)
    with pytest.raises(ValueError, match="rate_burst needs rate_limit"):
        create_app(api_keys=KEY, rate_burst=3)
    with pytest.raises(ValueError, match="burst"):
        create_app(api_keys=KEY, rate_limit=1.0, rate_burst=0)
    with pytest.raises(ValueError, match="abuse_threshold"):
        create_app(api_keys=KEY, rate_limit=1.0, abuse_threshold=0)


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
