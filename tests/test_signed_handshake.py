"""The handshake of a client that pinned the server's key, against a middlebox
(:mod:`tests.frame_relay`) in front of the reference server, over loopback.

Before the server's signed ``auth_ok`` nothing is authenticated: whatever the
middlebox injects then must never reach the application as if the server had sent
it, and the client must never sign bytes that a middlebox chose and that could
stand for one of its signed frames.
"""

from __future__ import annotations

import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import WebSocketService
from nexus_reactive.errors import NexusError
from nexus_reactive.messages import Message
from nexus_reactive.signing import public_key_hex
from nexus_reactive.testing import NexusServer, client_config, wait_until

from .frame_relay import FrameRelay
from .signed_keys import client_key_fixture, server_fixture, server_key_fixture  # noqa: F401

FORGED = {
    "type": "response",
    "id": "forged-by-the-middlebox",
    "payload": {"answer": "transfer approved", "usage": None},
}
FORGED_ERROR = {
    "type": "error",
    "id": "forged-error",
    "payload": {"code": "internal", "message": "forged by the middlebox"},
}


def _type(frame: str) -> str:
    return str(json.loads(frame)["type"])


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
async def test_unsigned_messages_injected_during_the_handshake_never_reach_the_streams(
    server: NexusServer,
    client_key: Ed25519PrivateKey,
    server_key: Ed25519PrivateKey,
    encrypt: bool,
) -> None:
    """A forged ``response`` before the challenge, and a forged ``error`` (about an
    ask, not the handshake) before the signed ``auth_ok``: neither is the server's."""

    def inject(direction: str, conn: int, frame: str) -> list[str]:
        if direction != "down" or conn != 0:
            return [frame]
        if _type(frame) == "challenge":
            return [json.dumps(FORGED), frame]
        if _type(frame) in ("signed", "sealed") and not injected_error:
            injected_error.append(True)  # the first envelope is the auth_ok
            return [json.dumps(FORGED_ERROR), frame]
        return [frame]

    injected_error: list[bool] = []
    seen: list[Message] = []
    errors: list[NexusError] = []
    async with FrameRelay(server.url, inject) as relay:
        cfg = client_config(
            relay.url,
            server.key,
            signing_key=client_key,
            server_key=public_key_hex(server_key),
            encrypt=encrypt,
        )
        service = WebSocketService(cfg)
        # Subscribed before connecting: the handshake's messages would reach them.
        service.messages.subscribe(seen.append)
        service.errors.subscribe(errors.append)
        heard: list[Message] = []
        service.on_message("response", heard.append)
        async with service:
            assert (await service.ask("genuine")).answer == "You asked: genuine"
            await wait_until(lambda: any(m.type == "response" for m in seen))
    assert injected_error, "the relay never injected the error"
    ids = [m.id for m in seen]
    assert FORGED["id"] not in ids and FORGED_ERROR["id"] not in ids, ids
    assert all(m.id != FORGED["id"] for m in heard)
    # What was dropped is said, without its content.
    said = " | ".join(str(e) for e in errors)
    assert "unsigned" in said and "transfer approved" not in said, said


async def test_a_challenge_that_could_stand_for_a_signed_frame_is_not_signed(
    server: NexusServer, client_key: Ed25519PrivateKey, server_key: Ed25519PrivateKey
) -> None:
    """The client's key signs both the challenge and every frame. A middlebox that
    chooses the challenge's text must not obtain a signature over bytes that read as
    a signed frame (label, direction, connection id, sequence number, body): every
    frame's signed bytes hold a NUL byte, so a challenge holding one is refused."""
    frame_like = "nexus-reactive signed v1\x00C" + "A" * 16 + "\x00" * 8 + '{"type":"ask","id":"x"}'

    def swap_challenge(direction: str, conn: int, frame: str) -> list[str]:
        if direction == "down" and _type(frame) == "challenge":
            wire = json.loads(frame)
            wire["payload"]["challenge"] = frame_like
            return [json.dumps(wire)]
        return [frame]

    errors: list[NexusError] = []
    async with FrameRelay(server.url, swap_challenge) as relay:
        cfg = client_config(
            relay.url,
            server.key,
            signing_key=client_key,
            server_key=public_key_hex(server_key),
            max_reconnect_attempts=1,
        )
        service = WebSocketService(cfg)
        service.errors.subscribe(errors.append)
        with pytest.raises(NexusError, match="challenge"):
            await service.connect()
        await service.close()
    public = client_key.public_key()
    for direction, _, frame in relay.seen:
        if direction == "up" and _type(frame) == "auth":
            signature = bytes.fromhex(json.loads(frame)["payload"]["signature"])
            with pytest.raises(InvalidSignature):
                public.verify(signature, frame_like.encode())
    said = " | ".join(str(e) for e in errors)
    assert "NUL" in said, said
