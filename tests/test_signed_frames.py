"""Signed and sealed frames against the reference server over loopback, with a
middlebox (:mod:`tests.frame_relay`) that changes, truncates, replays, reorders,
strips or moves frames between connections, as anything that ends TLS could.

Every refused frame closes the connection (4409) and the client reconnects: the asks
in flight go again and are answered, from the server's remembered reply, so nothing
is lost and nothing is computed twice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import WebSocketService
from nexus_reactive.errors import AuthenticationError, NexusError
from nexus_reactive.server import EchoEngine
from nexus_reactive.signing import public_key_hex
from nexus_reactive.testing import NexusServer, client_config, wait_until

from .frame_relay import FrameRelay, Rewrite
from .signed_keys import client_key_fixture, server_fixture, server_key_fixture  # noqa: F401

MODES = [pytest.param(False, id="signed"), pytest.param(True, id="sealed")]


def config(
    url: str,
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    pinned: Ed25519PrivateKey,
    encrypt: bool,
    **options: Any,
) -> Any:
    return client_config(
        url,
        server.key,
        signing_key=client_key,
        server_key=public_key_hex(pinned),
        encrypt=encrypt,
        **options,
    )


def kind(frame: str) -> str:
    """The frame's type, or its inner message's type for a signed frame."""
    wire = json.loads(frame)
    if wire["type"] == "signed":
        return f"signed/{wire['payload']['body']['type']}"
    return str(wire["type"])


def once(where: Callable[[str, int, str], bool], change: Callable[[str], list[str]]) -> Rewrite:
    """Apply ``change`` to the first frame ``where`` selects; pass the others."""
    done = False

    def rewrite(direction: str, conn: int, frame: str) -> list[str]:
        nonlocal done
        if not done and where(direction, conn, frame):
            done = True
            return change(frame)
        return [frame]

    return rewrite


def nth_after_auth(direction: str, n: int = 0) -> Callable[[str, int, str], bool]:
    """The ``n``-th signed or sealed frame going ``direction`` on the first connection,
    after the server's ``auth_ok``."""
    counts: dict[str, int] = {}

    def where(d: str, conn: int, frame: str) -> bool:
        if d != direction or conn != 0 or json.loads(frame)["type"] not in ("signed", "sealed"):
            return False
        seen = counts.get(d, 0)
        counts[d] = seen + 1
        # The server's first envelope is its auth_ok.
        return seen == (n + 1 if direction == "down" else n)

    return where


def tamper(frame: str) -> list[str]:
    wire = json.loads(frame)
    payload = wire["payload"]
    if wire["type"] == "signed":
        body = payload["body"]
        if "query" in body["payload"]:
            body["payload"]["query"] = "tampered question"
        else:
            body["payload"]["answer"] = "tampered answer"
    else:
        box = payload["box"]
        payload["box"] = ("B" if box[0] != "B" else "C") + box[1:]
    return [json.dumps(wire)]


async def ask_through(
    relay_rewrite: Rewrite,
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    server_key: Ed25519PrivateKey,
    encrypt: bool,
    questions: int = 1,
) -> tuple[list[str], list[NexusError], FrameRelay]:
    errors: list[NexusError] = []
    async with FrameRelay(server.url, relay_rewrite) as relay:
        cfg = config(relay.url, server, client_key, server_key, encrypt)
        async with WebSocketService(cfg) as service:
            service.errors.subscribe(errors.append)
            answers = []
            for n in range(questions):
                answers.append((await service.ask(f"question {n}")).answer)
    return answers, errors, relay


@pytest.mark.parametrize("encrypt", MODES)
async def test_asks_are_answered_over_signed_and_sealed_frames(
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    server_key: Ed25519PrivateKey,
    encrypt: bool,
) -> None:
    answers, errors, relay = await ask_through(
        lambda d, c, f: [f], server, client_key, server_key, encrypt, questions=3
    )
    assert answers == [f"You asked: question {n}" for n in range(3)]
    assert errors == []
    assert server.stats.frames_signed == 1 and server.stats.frames_refused == 0
    # After the handshake (challenge, auth), every frame each way is an envelope.
    kinds = [kind(frame) for _, _, frame in relay.seen]
    assert kinds[:2] == ["challenge", "auth"]
    expected = "sealed" if encrypt else "signed"
    assert all(k.startswith(expected) for k in kinds[2:]), kinds
    if encrypt:
        assert not any("question" in frame for _, _, frame in relay.seen[2:])


async def test_streamed_answers_come_through_signed_frames(
    server_key: Ed25519PrivateKey, client_key: Ed25519PrivateKey
) -> None:
    async with NexusServer(signing_key=server_key, engine=EchoEngine(stream=True)) as server:
        cfg = config(server.url, server, client_key, server_key, encrypt=True)
        async with WebSocketService(cfg) as service:
            pieces: list[str] = []
            service.ask_stream("one two three").subscribe(pieces.append)
            await wait_until(lambda: "".join(pieces) == "You asked: one two three")
        assert server.stats.chunks_sent > 1


@pytest.mark.parametrize("encrypt", MODES)
@pytest.mark.parametrize(
    ("direction", "change", "refused_by", "reason"),
    [
        ("up", tamper, "server", "bad_signature"),
        ("down", tamper, "client", "bad_signature"),
        ("up", lambda f: [f[: len(f) // 2]], "server", "malformed"),
        ("down", lambda f: [f[: len(f) // 2]], "client", "malformed"),
        ("up", lambda f: [f, f], "server", "replayed"),
        ("down", lambda f: [f, f], "client", "replayed"),
    ],
    ids=[
        "tampered-up",
        "tampered-down",
        "truncated-up",
        "truncated-down",
        "replayed-up",
        "replayed-down",
    ],
)
async def test_a_bad_frame_is_refused_and_the_ask_is_answered_after_reconnecting(
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    server_key: Ed25519PrivateKey,
    encrypt: bool,
    direction: str,
    change: Callable[[str], list[str]],
    refused_by: str,
    reason: str,
) -> None:
    rewrite = once(nth_after_auth(direction), change)
    answers, errors, relay = await ask_through(
        rewrite, server, client_key, server_key, encrypt, questions=2
    )
    # Nothing lost, nothing changed, nothing computed twice.
    assert answers == ["You asked: question 0", "You asked: question 1"]
    assert server.stats.engine_calls == 2
    assert relay.connections >= 2
    said = " | ".join(str(e) for e in errors)
    assert f"({reason})" in said, said
    if refused_by == "server":
        assert server.stats.frames_refused == 1
        assert "bad_frame" in said and "4409" in said
    else:
        assert "refused a frame from the server" in said


@pytest.mark.parametrize("drop", [False, True], ids=["swapped", "dropped"])
async def test_reordered_or_dropped_frames_are_refused_and_nothing_is_lost(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey, drop: bool
) -> None:
    """A frame dropped on the way shows when the next one comes: its number is not the
    next. (A last frame dropped with nothing after it looks like a slow answer: the
    ask's ``request_timeout`` covers it.)"""
    held: list[str] = []

    def swap_first_two_asks(direction: str, conn: int, frame: str) -> list[str]:
        if direction != "up" or conn != 0 or kind(frame) != "signed/ask":
            return [frame]
        held.append(frame)
        if len(held) == 1:
            return []
        return [frame] if drop or len(held) > 2 else [frame, held[0]]

    errors: list[NexusError] = []
    async with FrameRelay(server.url, swap_first_two_asks) as relay:
        cfg = config(relay.url, server, client_key, server_key, encrypt=False)
        async with WebSocketService(cfg) as service:
            service.errors.subscribe(errors.append)
            both = await asyncio.gather(service.ask("first"), service.ask("second"))
            assert [reply.answer for reply in both] == ["You asked: first", "You asked: second"]
    assert "(reordered)" in " | ".join(str(e) for e in errors)
    assert server.stats.frames_refused == 1 and server.stats.engine_calls == 2


async def test_a_frame_from_another_connection_is_refused(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey
) -> None:
    recorded: dict[int, str] = {}

    def replay_across(direction: str, conn: int, frame: str) -> list[str]:
        if direction == "up" and kind(frame) == "signed/ask":
            if conn == 0 and 0 not in recorded:
                recorded[0] = frame
            elif conn == 1 and 1 not in recorded:
                recorded[1] = frame
                return [recorded[0]]  # the first connection's ask, in its place
        return [frame]

    errors: list[NexusError] = []
    async with FrameRelay(server.url, replay_across) as relay:
        cfg = config(relay.url, server, client_key, server_key, encrypt=False)
        async with WebSocketService(cfg) as service:
            service.errors.subscribe(errors.append)
            assert (await service.ask("on the first")).answer == "You asked: on the first"
            await server.close_connections(1012)
            assert (await service.ask("on the second")).answer == "You asked: on the second"
    assert "(other_connection)" in " | ".join(str(e) for e in errors)


@pytest.mark.parametrize("direction", ["up", "down"])
async def test_a_peer_that_stops_signing_mid_connection_is_refused(
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    server_key: Ed25519PrivateKey,
    direction: str,
) -> None:
    def unsigned(frame: str) -> list[str]:
        return [json.dumps(json.loads(frame)["payload"]["body"])]

    rewrite = once(nth_after_auth(direction, 1), unsigned)
    answers, errors, _ = await ask_through(
        rewrite, server, client_key, server_key, False, questions=3
    )
    assert answers == [f"You asked: question {n}" for n in range(3)]
    said = " | ".join(str(e) for e in errors)
    assert "(unsigned)" in said and "stopped signing" in said


async def test_a_wrong_pinned_key_is_fatal_and_says_which_keys(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey
) -> None:
    wrong = Ed25519PrivateKey.generate()
    cfg = config(server.url, server, client_key, wrong, encrypt=False)
    with pytest.raises(AuthenticationError) as caught:
        async with WebSocketService(cfg):
            pass
    message = str(caught.value)
    assert public_key_hex(server_key) in message and public_key_hex(wrong) in message
    assert server.stats.connections_total == 1  # not retried


async def test_a_key_rotated_between_connections(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey
) -> None:
    old_pin = config(server.url, server, client_key, server_key, encrypt=False)
    async with WebSocketService(old_pin) as service:
        assert (await service.ask("before")).answer == "You asked: before"
        await server.stop()
        rotated_key = Ed25519PrivateKey.generate()
        rotated = NexusServer(api_keys=server.api_keys, signing_key=rotated_key)
        rotated.port = server.port
        async with rotated:
            # The old pin: the next connection fails for good, and says why.
            with pytest.raises(AuthenticationError, match="rotated"):
                await service.ask("after")
            assert rotated.stats.connections_total == 1
            # The new pin works.
            new_pin = config(rotated.url, rotated, client_key, rotated_key, encrypt=False)
            async with WebSocketService(new_pin) as fresh:
                assert (await fresh.ask("after")).answer == "You asked: after"


async def test_a_client_pinning_a_server_without_a_key_is_told_so(
    client_key: Ed25519PrivateKey,
) -> None:
    async with NexusServer(require_signature=True) as plain:
        pin = Ed25519PrivateKey.generate()
        with pytest.raises(AuthenticationError, match="offers no signed frames"):
            async with WebSocketService(config(plain.url, plain, client_key, pin, False)):
                pass


async def test_a_server_that_requires_signed_frames_refuses_a_client_that_does_not_sign(
    server_key: Ed25519PrivateKey, client_key: Ed25519PrivateKey
) -> None:
    async with NexusServer(signing_key=server_key, require_frames="signed") as strict:
        plain = client_config(strict.url, strict.key, signing_key=client_key)
        with pytest.raises(AuthenticationError, match=r"frames_refused.*server_key") as caught:
            async with WebSocketService(plain):
                pass
        assert not caught.value.retryable
        assert strict.stats.frames_refused == 1 and strict.stats.connections_total == 1


async def test_a_middlebox_that_strips_the_request_for_signed_frames_is_caught(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey
) -> None:
    def strip(frame: str) -> list[str]:
        wire = json.loads(frame)
        for name in ("frames", "nonce", "enc"):
            wire["payload"].pop(name, None)
        return [json.dumps(wire)]

    rewrite = once(lambda d, c, f: d == "up" and json.loads(f)["type"] == "auth", strip)
    async with FrameRelay(server.url, rewrite) as relay:
        cfg = config(relay.url, server, client_key, server_key, encrypt=False)
        with pytest.raises(AuthenticationError, match="unsigned 'auth_ok'"):
            async with WebSocketService(cfg):
                pass
