"""The reference server's size and rate limits: frames too big, and the token bucket with a
frozen clock then over the wire. Real loopback sockets, with aiohttp's client as the raw
peer; rate-limit tests freeze the server's clock (``create_app(clock=...)``) so that no
token refills behind the test's back.
"""

from __future__ import annotations

import json
import zlib

import aiohttp
import pytest

from nexus_reactive.server import (
    CLOSE_RATE_LIMITED,
    STATE_KEY,
    RateLimiter,
    TokenBucket,
    create_app,
)
from nexus_reactive.signing import generate_keypair

from .conftest import MakeServer
from .test_server import (
    KEY,
    GatedEngine,
    ask,
    assert_usable,
    connect,
    recv,
    send,
    stats,
    wait_until,
)
from .test_server_security import auth_frame, expect_close, frames_until_close

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
