"""Signed and sealed frames without sockets: the envelope, its checks, the agreement in
the challenge exchange, and HPKE against RFC 9180's published test vectors."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from nexus_reactive import WebSocketConfig, codec, sealing
from nexus_reactive.errors import AuthenticationError, ConfigError, NexusConnectionError
from nexus_reactive.framing import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    FrameGuard,
    FrameRefused,
    connection_id,
    load_server_key,
    raw_public,
)
from nexus_reactive.messages import AskMessage, AskRequest, AuthPayload, ChallengePayload
from nexus_reactive.negotiation import FrameKeys, accept, offer, server_offer
from nexus_reactive.signing import public_key_hex

VECTORS = Path(__file__).parent / "data" / "hpke_rfc9180_a2_1.json"
CHALLENGE = "c" * 43


def ask_frame(query: str = "What is Nexus?", id_: str = "a1") -> bytes:
    return codec.encode(AskMessage(id=id_, payload=AskRequest(query)))


class Pair:
    """Both ends of one connection, agreed as the protocol agrees them."""

    def __init__(self, encrypt: bool = False, challenge: str = CHALLENGE) -> None:
        self.server_key = Ed25519PrivateKey.generate()
        self.client_key = Ed25519PrivateKey.generate()
        keys = FrameKeys(self.server_key, public_key_hex(self.server_key), True, None)
        fields, seal = server_offer(keys, challenge)
        made = offer(
            ChallengePayload(challenge, **fields),
            self.client_key,
            self.server_key.public_key(),
            encrypt,
        )
        self.client = made.guard
        auth = AuthPayload("", "", challenge, **made.fields())
        server = accept(keys, challenge, auth, self.client_key.public_key(), seal)
        assert isinstance(server, FrameGuard)
        self.server = server


def refused(guard: FrameGuard, frame: bytes | str) -> FrameRefused:
    with pytest.raises(FrameRefused) as caught:
        guard.unwrap(frame)
    return caught.value


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
def test_frames_go_both_ways_and_come_out_as_sent(encrypt: bool) -> None:
    pair = Pair(encrypt)
    for n in range(3):
        frame = ask_frame(f"question {n}")
        assert pair.server.unwrap(pair.client.wrap(frame)) == frame
        reply = f'{{"type":"response","id":"a{n}","payload":{{"answer":"{n}"}}}}'.encode()
        assert pair.client.unwrap(pair.server.wrap(reply)) == reply
    assert pair.client.sent == pair.server.received == 3


def test_a_signed_frame_carries_the_message_as_it_was_signed() -> None:
    pair = Pair()
    wire = json.loads(pair.client.wrap(ask_frame("in the clear")))
    assert wire["type"] == "signed" and wire["id"] == ""
    assert wire["payload"]["body"]["payload"]["query"] == "in the clear"
    assert wire["payload"]["seq"] == 0


def test_a_sealed_frame_hides_the_message() -> None:
    pair = Pair(encrypt=True)
    wire = pair.client.wrap(ask_frame("a secret question", id_="secret-id"))
    assert b"secret" not in wire and b"ask" not in wire
    box = base64.b64decode(json.loads(wire)["payload"]["box"])
    assert len(box) == len(ask_frame("a secret question", id_="secret-id")) + 16


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
def test_a_changed_frame_is_refused(encrypt: bool) -> None:
    pair = Pair(encrypt)
    wire = json.loads(pair.client.wrap(ask_frame("give me the answer")))
    if encrypt:
        box = bytearray(base64.b64decode(wire["payload"]["box"]))
        box[5] ^= 1
        wire["payload"]["box"] = base64.b64encode(box).decode()
    else:
        wire["payload"]["body"]["payload"]["query"] = "give me the secrets"
    error = refused(pair.server, json.dumps(wire))
    assert error.kind == "bad_signature"
    assert "changed on the way" in error.reason


def test_a_truncated_frame_is_refused() -> None:
    pair = Pair()
    wire = pair.server.wrap(b'{"type":"response","id":"a","payload":{"answer":"42"}}')
    error = refused(pair.client, wire[: len(wire) // 2])
    assert error.kind == "malformed" and "truncated" in error.reason


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
def test_a_replayed_frame_is_refused(encrypt: bool) -> None:
    pair = Pair(encrypt)
    wire = pair.client.wrap(ask_frame())
    pair.server.unwrap(wire)
    error = refused(pair.server, wire)
    assert error.kind == "replayed" and "sequence number 0" in error.reason


def test_reordered_frames_are_refused() -> None:
    pair = Pair()
    first, second = pair.client.wrap(ask_frame("1")), pair.client.wrap(ask_frame("2"))
    error = refused(pair.server, second)
    assert error.kind == "reordered" and "1 where 0 was expected" in error.reason
    # Once one is refused, the connection is done: even the right next frame is refused.
    assert refused(pair.server, first).kind == "after_refusal"


def test_a_frame_of_another_connection_is_refused() -> None:
    one, other = Pair(), Pair()
    # The same keys on a second connection: only the connection id differs.
    other_conn = Pair.__new__(Pair)
    conn = connection_id(
        "signed",
        CHALLENGE,
        b"\x01" * 32,
        raw_public(one.server_key),
        raw_public(one.client_key),
    )
    other_conn.client = FrameGuard(
        "signed", conn, CLIENT_TO_SERVER, one.client_key, one.server_key.public_key()
    )
    error = refused(one.server, other_conn.client.wrap(ask_frame()))
    assert error.kind == "other_connection"
    # A frame of a connection between other keys altogether fails the same way.
    assert refused(Pair().server, other.client.wrap(ask_frame())).kind == "other_connection"


def test_a_frame_sent_back_to_its_sender_is_refused() -> None:
    pair = Pair()
    reflected = refused(pair.client, pair.client.wrap(ask_frame()))
    assert reflected.kind == "bad_signature"


def test_a_frame_signed_by_another_key_is_refused() -> None:
    pair = Pair()
    impostor = FrameGuard(
        "signed",
        bytes.fromhex(json.loads(pair.server.wrap(b"{}"))["payload"]["conn"]),
        SERVER_TO_CLIENT,
        Ed25519PrivateKey.generate(),
        pair.client_key.public_key(),
    )
    assert refused(pair.client, impostor.wrap(b'{"type":"auth_ok"}')).kind == "bad_signature"


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
def test_an_unsigned_frame_is_refused_and_says_so(encrypt: bool) -> None:
    pair = Pair(encrypt)
    error = refused(pair.server, ask_frame())
    assert (
        error.kind == "unsigned" and "'ask'" in error.reason and "stopped signing" in error.reason
    )


def test_a_signed_frame_on_a_sealed_connection_is_refused() -> None:
    sealed, signed = Pair(encrypt=True), Pair()
    assert refused(sealed.server, signed.client.wrap(ask_frame())).kind == "unsigned"


def test_the_connection_id_binds_every_input() -> None:
    keys = (b"\x01" * 32, b"\x02" * 32)
    base = connection_id("signed", CHALLENGE, b"\x00" * 32, *keys)
    variants = [
        connection_id("sealed", CHALLENGE, b"\x00" * 32, *keys),
        connection_id("signed", CHALLENGE + "x", b"\x00" * 32, *keys),
        connection_id("signed", CHALLENGE, b"\x09" * 32, *keys),
        connection_id("signed", CHALLENGE, b"\x00" * 32, *reversed(keys)),
        connection_id("signed", CHALLENGE, b"\x00" * 32, *keys, b"\x05" * 32),
    ]
    assert len(base) == 16 and base not in variants and len(set(variants)) == len(variants)


# --- the agreement --------------------------------------------------------------------


def client_offer(challenge: ChallengePayload, pinned: Ed25519PrivateKey, encrypt: bool) -> Any:
    return offer(challenge, Ed25519PrivateKey.generate(), pinned.public_key(), encrypt)


def test_a_server_that_offers_no_key_is_fatal() -> None:
    with pytest.raises(AuthenticationError, match="offers no signed frames"):
        client_offer(ChallengePayload(CHALLENGE), Ed25519PrivateKey.generate(), False)


def test_a_server_key_that_is_not_the_pinned_one_is_fatal_and_names_both() -> None:
    pinned, actual = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    challenge = ChallengePayload(CHALLENGE, server_key=public_key_hex(actual))
    with pytest.raises(AuthenticationError) as caught:
        client_offer(challenge, pinned, False)
    message = str(caught.value)
    assert public_key_hex(actual) in message and public_key_hex(pinned) in message
    assert "rotated" in message and not caught.value.retryable


def test_encrypt_against_a_server_that_cannot_seal_is_fatal() -> None:
    key = Ed25519PrivateKey.generate()
    challenge = ChallengePayload(CHALLENGE, server_key=public_key_hex(key))
    with pytest.raises(AuthenticationError, match="cannot encrypt"):
        client_offer(challenge, key, True)


def test_a_seal_key_not_signed_by_the_pinned_key_is_retried() -> None:
    key = Ed25519PrivateKey.generate()
    keys = FrameKeys(key, public_key_hex(key), True, None)
    fields, _ = server_offer(keys, CHALLENGE)
    fields["seal_key"] = X25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    with pytest.raises(NexusConnectionError, match="not signed by the pinned") as caught:
        client_offer(ChallengePayload(CHALLENGE, **fields), key, True)
    assert caught.value.retryable


def server_decision(
    require: Any, asked: dict[str, str], has_key: bool = True, can_seal: bool = True
) -> Any:
    key = Ed25519PrivateKey.generate()
    keys = FrameKeys(key, public_key_hex(key), can_seal, require) if has_key else None
    seal = sealing.new_seal_key() if can_seal else None
    auth = AuthPayload("", "", CHALLENGE, **asked)
    return accept(keys, CHALLENGE, auth, Ed25519PrivateKey.generate().public_key(), seal)


NONCE = "00" * 32


@pytest.mark.parametrize(
    ("require", "asked", "has_key", "expected"),
    [
        (None, {}, True, None),
        ("signed", {}, True, "requires signed frames: pin its public key"),
        ("sealed", {}, True, "encrypt=True"),
        (None, {"frames": "signed", "nonce": NONCE}, False, "without a signing key"),
        ("sealed", {"frames": "signed", "nonce": NONCE}, True, "requires sealed frames"),
        (None, {"frames": "signed", "nonce": "12"}, True, "nonce must be 32 random bytes"),
        (None, {"frames": "loud", "nonce": NONCE}, True, "frames must be one of"),
        (None, {"frames": "sealed", "nonce": NONCE, "enc": "zz"}, True, "enc must be"),
    ],
)
def test_the_server_refuses_what_it_cannot_agree_to(
    require: Any, asked: dict[str, str], has_key: bool, expected: str | None
) -> None:
    decision = server_decision(require, asked, has_key)
    if expected is None:
        assert decision is None
    else:
        assert isinstance(decision, str) and expected in decision


def test_a_server_without_the_encryption_extra_refuses_sealed_frames() -> None:
    decision = server_decision(None, {"frames": "sealed", "nonce": NONCE}, can_seal=False)
    assert isinstance(decision, str) and "encryption extra" in decision


def test_a_server_that_requires_signed_frames_takes_sealed_ones() -> None:
    decision = server_decision(
        "signed",
        {
            "frames": "sealed",
            "nonce": NONCE,
            "enc": sealing.new_seal_key().public_key().public_bytes_raw().hex(),
        },
    )
    assert isinstance(decision, FrameGuard) and decision.mode == "sealed"


# --- the pinned key and the options ----------------------------------------------------


def test_the_pinned_key_is_read_in_every_form(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    hex_key = public_key_hex(key)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "k.pub").write_text(hex_key + "\n")
    (tmp_path / "k.pem").write_bytes(pem)
    for source in (
        hex_key,
        hex_key.upper(),
        f"  {hex_key}\n",
        public,
        str(tmp_path / "k.pub"),
        tmp_path / "k.pem",
        pem.decode(),
    ):
        assert public_key_hex(load_server_key(source)) == hex_key  # type: ignore[arg-type]


def test_a_bad_pinned_key_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither 64 hex digits nor a readable key file"):
        load_server_key("no-such-key.pub")
    with pytest.raises(ConfigError, match="6 hex digits, not 64"):
        load_server_key("abc123")
    (tmp_path / "junk").write_text("not a key")
    with pytest.raises(ConfigError, match="neither 64 hex digits nor a PEM public key"):
        load_server_key(tmp_path / "junk")
    private = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (tmp_path / "private.pem").write_bytes(private)
    with pytest.raises(ConfigError) as caught:
        load_server_key(tmp_path / "private.pem")
    assert b"PRIVATE" not in str(caught.value).encode()
    with pytest.raises(ConfigError, match="got a int"):
        load_server_key(42)  # type: ignore[arg-type]


def test_the_options_must_fit_together() -> None:
    key = Ed25519PrivateKey.generate()
    with pytest.raises(ConfigError, match=r"encrypt=True needs server_key"):
        WebSocketConfig(signing_key=key, encrypt=True)
    with pytest.raises(ConfigError, match=r"server_key needs signing_key"):
        WebSocketConfig(server_key=public_key_hex(key))
    config = WebSocketConfig(signing_key=key, server_key=public_key_hex(key), encrypt=True)
    # Public keys may be shown; the private one never is.
    assert public_key_hex(key) in repr(config) and "signing_key=<set>" in repr(config)
    assert key.private_bytes_raw().hex() not in repr(config)


def test_no_key_material_in_reprs() -> None:
    pair = Pair(encrypt=True)
    server_key = pair.server_key
    seed = server_key.private_bytes_raw().hex()
    keys = FrameKeys(server_key, public_key_hex(server_key), True, None)
    for thing in (pair.client, pair.server, pair.client._channel, keys):
        assert seed not in repr(thing) and "key=" not in repr(thing).replace("public_hex", "")
