"""HPKE (RFC 9180) as sealed frames use it (nexus_reactive/sealing.py), without sockets:
the suite against the RFC's published test vectors, and the server-to-client
direction keyed by the exporter (section 9.8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from nexus_reactive import sealing

VECTORS = Path(__file__).parent / "data" / "hpke_rfc9180_a2_1.json"
CHALLENGE = "c" * 43


def test_hpke_matches_rfc_9180_test_vectors() -> None:
    """Appendix A.2.1 (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    ChaCha20Poly1305): the suite sealing.py uses gives the published enc, ciphertexts
    and exported values, and opens what it sealed."""
    from pyhpke import KEMKey, KEMKeyPair

    v = json.loads(VECTORS.read_text())
    h = bytes.fromhex
    suite = sealing.suite()
    ephemeral = X25519PrivateKey.from_private_bytes(h(v["skEm"]))
    recipient = X25519PrivateKey.from_private_bytes(h(v["skRm"]))
    assert recipient.public_key().public_bytes_raw().hex() == v["pkRm"]
    eks = KEMKeyPair(
        KEMKey.from_pyca_cryptography_key(ephemeral),
        KEMKey.from_pyca_cryptography_key(ephemeral.public_key()),
    )
    enc, sender = suite.create_sender_context(
        KEMKey.from_pyca_cryptography_key(recipient.public_key()), h(v["info"]), eks=eks
    )
    assert enc.hex() == v["enc"]
    receiver = suite.create_recipient_context(
        enc, KEMKey.from_pyca_cryptography_key(recipient), h(v["info"])
    )
    expected = {e["seq"]: e for e in v["encryptions"]}
    for seq in range(max(expected) + 1):
        case = expected.get(seq)
        pt, aad = (h(case["pt"]), h(case["aad"])) if case else (b"filler", b"")
        ct = sender.seal(pt, aad)
        if case:
            assert ct.hex() == case["ct"], f"sequence number {seq}"
        assert receiver.open(ct, aad) == pt
    for export in v["exports"]:
        context = h(export["exporter_context"])
        assert sender.export(context, export["L"]).hex() == export["exported_value"]
        assert receiver.export(context, export["L"]).hex() == export["exported_value"]


def test_the_server_to_client_direction_is_keyed_by_the_exporter() -> None:
    """RFC 9180 section 9.8: the responses' key and nonce come from Export on both
    sides; each frame's nonce differs, and a changed box does not open."""
    seal = sealing.new_seal_key()
    enc, client = sealing.client_channel(
        seal.public_key().public_bytes_raw(), CHALLENGE, b"\x00" * 32
    )
    server = sealing.server_channel(enc, seal, CHALLENGE, b"\x00" * 32)
    boxes = [server.seal(b"same answer", b"aad") for _ in range(2)]
    assert boxes[0] != boxes[1]
    assert [client.open(box, b"aad") for box in boxes] == [b"same answer"] * 2
    tampered = bytearray(server.seal(b"third", b"aad"))
    tampered[0] ^= 1
    with pytest.raises(Exception):  # noqa: B017, PT011 - the AEAD's own error
        client.open(bytes(tampered), b"aad")
    # Another connection's info gives other keys: its boxes do not open here.
    enc2, other = sealing.client_channel(
        seal.public_key().public_bytes_raw(), CHALLENGE, b"\x01" * 32
    )
    stranger = sealing.server_channel(enc2, seal, CHALLENGE, b"\x01" * 32)
    with pytest.raises(Exception):  # noqa: B017, PT011
        client.open(stranger.seal(b"x", b"aad"), b"aad")
    assert other is not client
