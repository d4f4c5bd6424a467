"""Reading a public key given by a user (``server_key=``, ``--server-key``,
``--allowed-pubkey``): every form, and errors that never show key material; and a
public key given where the private one goes. No sockets."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.errors import ConfigError
from nexus_reactive.public_keys import load_public_key
from nexus_reactive.signing import load_signing_key, public_key_hex


def test_an_openssh_public_key_file_is_read_like_a_pub_file(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    (tmp_path / "id_ed25519.pub").write_bytes(line + b" me@host\n")
    loaded = load_public_key(tmp_path / "id_ed25519.pub")
    assert public_key_hex(loaded) == public_key_hex(key)


def test_a_key_of_another_kind_is_named_and_refused(tmp_path: Path) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    (tmp_path / "rsa.pem").write_bytes(
        other.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(ConfigError, match=r"--allowed-pubkey file .* RSAPublicKey, not an Ed25519"):
        load_public_key(tmp_path / "rsa.pem", name="--allowed-pubkey", advice="Pass X")


def test_the_name_instead_and_advice_are_the_callers(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "id").write_bytes(pem)
    with pytest.raises(ConfigError) as caught:
        load_public_key(tmp_path / "id", name="--flag", instead="do this", advice="Do that")
    assert str(caught.value) == f"--flag file {str(tmp_path / 'id')!r} holds a private key; do this"
    with pytest.raises(ConfigError, match=r"^--flag 'nope' is neither .*\)\. Do that$"):
        load_public_key("nope", name="--flag", instead="do this", advice="Do that")


def test_key_material_given_in_its_place_is_never_quoted() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    ).hex()
    base64ish = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k"
    for given in (pem, seed + seed, seed[:-1], base64ish):
        with pytest.raises(ConfigError) as caught:
            load_public_key(given)
        said = str(caught.value)
        assert seed[:16] not in said and base64ish not in said, said
        for line in pem.splitlines()[1:-1]:
            assert line not in said


def test_a_file_too_big_to_be_a_key_is_not_read_whole(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"0" * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match="too big to be a key file"):
        load_public_key(tmp_path / "big")


def test_a_public_key_file_given_as_the_signing_key_says_to_pass_the_private_one(
    tmp_path: Path,
) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    (tmp_path / "id_ed25519.pub").write_bytes(
        public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    )
    (tmp_path / "id.pem").write_bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for name in ("id_ed25519.pub", "id.pem"):
        with pytest.raises(ConfigError, match=r"holds a public key, which cannot sign"):
            load_signing_key(tmp_path / name)
