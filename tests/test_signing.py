"""Ed25519 keys for key-pair authentication: loading, signing, verifying, writing.

Pure tests: no sockets. Key material must never show up in a message, repr or str.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive.errors import ConfigError
from nexus_reactive.signing import (
    PUBLIC_KEY_HEX_LENGTH,
    SIGNATURE_HEX_LENGTH,
    generate_keypair,
    is_public_key_hex,
    load_signing_key,
    public_key_hex,
    sign_challenge,
    verify_signature,
    write_keypair,
)

# RFC 8032, section 7.1, test 1: a known seed, its public key, and the signature
# of the empty message.
RFC_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC_SIGNATURE_OF_EMPTY = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
    "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def pem_bytes(key: Ed25519PrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def seed_of(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex()


# --- the wire format ---------------------------------------------------------------------


def test_rfc8032_vector() -> None:
    key = load_signing_key(RFC_SEED)
    assert public_key_hex(key) == RFC_PUBLIC
    assert public_key_hex(key.public_key()) == RFC_PUBLIC
    assert sign_challenge(key, "") == RFC_SIGNATURE_OF_EMPTY
    assert verify_signature(RFC_PUBLIC, "", RFC_SIGNATURE_OF_EMPTY)


def test_sign_and_verify_round_trip_over_utf8() -> None:
    key = generate_keypair()
    pubkey = public_key_hex(key)
    challenge = "nönce-✓-Zm9v"
    signature = sign_challenge(key, challenge)
    assert len(pubkey) == PUBLIC_KEY_HEX_LENGTH and pubkey == pubkey.lower()
    assert len(signature) == SIGNATURE_HEX_LENGTH and signature == signature.lower()
    # What is signed is exactly the challenge's UTF-8 bytes.
    key.public_key().verify(bytes.fromhex(signature), challenge.encode("utf-8"))
    assert verify_signature(pubkey, challenge, signature)
    assert not verify_signature(pubkey, challenge + " ", signature)
    assert not verify_signature(public_key_hex(generate_keypair()), challenge, signature)


@pytest.mark.parametrize(
    ("pubkey", "challenge", "signature"),
    [
        ("", "c", ""),
        ("zz" * 32, "c", "00" * 64),  # not hex
        ("ab" * 31, "c", "00" * 64),  # too short
        ("AB" * 32, "c", "00" * 64),  # upper case is not the wire form
        ("ab" * 32, "c", "00" * 63),
        (" " + "ab" * 31 + "a", "c", "00" * 64),  # bytes.fromhex would skip the space
        ("00" * 32, "c", "00" * 64),  # hex, but a point of small order / bad signature
        ("ff" * 32, "c", "ff" * 64),
        (None, "c", "00" * 64),
        (b"\x00" * 32, "c", b"\x00" * 64),
        (RFC_PUBLIC, "\ud800", "00" * 64),  # lone surrogate: no UTF-8 form
        (RFC_PUBLIC, 5, RFC_SIGNATURE_OF_EMPTY),
        (RFC_PUBLIC, "", RFC_SIGNATURE_OF_EMPTY[:-2] + "00"),  # tampered
    ],
)
def test_verify_never_raises_on_junk(pubkey: object, challenge: object, signature: object) -> None:
    assert verify_signature(pubkey, challenge, signature) is False


def test_is_public_key_hex() -> None:
    assert is_public_key_hex(RFC_PUBLIC)
    assert not is_public_key_hex(RFC_PUBLIC.upper())
    assert not is_public_key_hex(RFC_PUBLIC + "00")
    assert not is_public_key_hex(None)


# --- loading -----------------------------------------------------------------------------


def test_load_accepts_a_key_object_as_is() -> None:
    key = generate_keypair()
    assert load_signing_key(key) is key


def test_load_a_hex_seed_either_case_and_raw_seed_bytes() -> None:
    assert public_key_hex(load_signing_key(RFC_SEED.upper())) == RFC_PUBLIC
    assert public_key_hex(load_signing_key(bytes.fromhex(RFC_SEED))) == RFC_PUBLIC


@pytest.mark.parametrize(
    "fmt", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH]
)
def test_load_pem_files_by_str_and_path(tmp_path: Path, fmt: serialization.PrivateFormat) -> None:
    key = generate_keypair()
    path = tmp_path / "key.pem"
    path.write_bytes(pem_bytes(key, fmt))
    assert public_key_hex(load_signing_key(path)) == public_key_hex(key)
    assert public_key_hex(load_signing_key(str(path))) == public_key_hex(key)
    assert public_key_hex(load_signing_key(pem_bytes(key, fmt))) == public_key_hex(key)


def _encrypted(key: Ed25519PrivateKey, fmt: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"pass")
    )


def _openssh_encrypted(key: Ed25519PrivateKey) -> bytes:
    # Writing an encrypted OpenSSH key needs bcrypt, which is not a dependency; the
    # reader refuses before decrypting anything, so only the envelope matters.
    def field(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    public = bytes.fromhex(public_key_hex(key))
    blob = (
        b"openssh-key-v1\x00"
        + field(b"aes256-ctr")
        + field(b"bcrypt")
        + field(field(b"0123456789abcdef") + (16).to_bytes(4, "big"))
        + (1).to_bytes(4, "big")
        + field(field(b"ssh-ed25519") + field(public))
        + field(b"\x00" * 160)
    )
    text = base64.b64encode(blob).decode()
    lines = [text[i : i + 70] for i in range(0, len(text), 70)]
    return "\n".join(
        ["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----", ""]
    ).encode()


def _ec_key(_: Ed25519PrivateKey) -> bytes:
    other = ec.generate_private_key(ec.SECP256R1())
    return other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    ("make", "mentions"),
    [
        (lambda k: _encrypted(k, serialization.PrivateFormat.PKCS8), "encrypted"),
        (_openssh_encrypted, "encrypted"),
        (_ec_key, "not an Ed25519"),
        (
            lambda k: pem_bytes(k, serialization.PrivateFormat.PKCS8).replace(b"M", b"N"),
            "not a readable",
        ),
        (lambda k: seed_of(k).encode() + b"\n", "not a readable"),  # a seed in a file: no
        (lambda k: b"", "not a readable"),
    ],
    ids=["pkcs8-encrypted", "openssh-encrypted", "ec-key", "corrupt", "seed-file", "empty"],
)
def test_bad_key_files_are_config_errors_naming_the_path_not_the_key(
    tmp_path: Path, make: object, mentions: str
) -> None:
    key = generate_keypair()
    assert callable(make)
    data: bytes = make(key)
    path = tmp_path / "secret-key.pem"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_signing_key(path)
    text = str(info.value)
    assert mentions in text
    assert str(path) in text
    assert_no_key_material(info.value, key, data)
    # The parser's own exception (which might quote its input) is not chained.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_signing_key(tmp_path / "nope")
    with pytest.raises(ConfigError, match="directory"):
        load_signing_key(tmp_path)


def test_a_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 100_000)
    with pytest.raises(ConfigError, match="too big"):
        load_signing_key(path)


@pytest.mark.parametrize(
    "value",
    [b"\x01" * 31, b"\x01" * 33, 12345, RFC_SEED[:-1] + "g", RFC_SEED + "0"],
    ids=["31-bytes", "33-bytes", "int", "typo", "65-digits"],
)
def test_other_inputs_are_config_errors(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        load_signing_key(value)  # type: ignore[arg-type]
    assert RFC_SEED[:-1] not in str(info.value)


def assert_no_key_material(exc: BaseException, key: Ed25519PrivateKey, data: bytes) -> None:
    seed = seed_of(key)
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    for text in texts:
        assert seed not in text
        assert seed.upper() not in text
        # No run of the file's base64 body either.
        body = [
            line
            for line in data.decode("ascii", "replace").splitlines()
            if len(line) > 20 and not line.startswith("-----")
        ]
        for line in body:
            assert line[:20] not in text


def test_seed_never_appears_in_reprs_or_signatures() -> None:
    seed = os.urandom(32).hex()
    key = load_signing_key(f"  {seed}\n")  # as read from a file or an environment variable
    for text in (repr(key), str(key), repr(key.public_key()), public_key_hex(key)):
        assert seed not in text
    assert seed not in sign_challenge(key, "challenge")
    assert public_key_hex(load_signing_key(seed.upper())) == public_key_hex(key)


@pytest.mark.parametrize("cut", [1, 2, 10])
def test_a_mistyped_seed_is_not_echoed_as_a_file_name(cut: int) -> None:
    seed = os.urandom(32).hex()
    with pytest.raises(ConfigError) as info:
        load_signing_key(seed[:-cut])
    assert "not shown" in str(info.value)
    assert seed[: 64 - cut - 8] not in str(info.value)
    assert seed[8:20] not in repr(info.value)


def test_pem_text_given_as_a_string_is_read_not_echoed() -> None:
    key = generate_keypair()
    text = pem_bytes(key, serialization.PrivateFormat.PKCS8).decode()
    assert public_key_hex(load_signing_key(text)) == public_key_hex(key)
    broken = text.replace("M", "N")
    with pytest.raises(ConfigError) as info:
        load_signing_key(broken)
    assert_no_key_material(info.value, key, broken.encode())


def test_a_path_with_a_nul_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="neither"):
        load_signing_key("bad\x00path")


# --- writing -----------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_write_keypair_creates_0600_and_a_pub_file(tmp_path: Path) -> None:
    key = generate_keypair()
    path = tmp_path / "id_nexus"
    old_umask = os.umask(0)  # even with a permissive umask the key is owner-only
    try:
        pubkey = write_keypair(path, key)
    finally:
        os.umask(old_umask)
    assert pubkey == public_key_hex(key)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert (tmp_path / "id_nexus.pub").read_text() == pubkey + "\n"
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_hex(load_signing_key(path)) == pubkey


def test_write_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "id_nexus"
    first = write_keypair(path, generate_keypair())
    with pytest.raises(FileExistsError, match="overwrite"):
        write_keypair(path, generate_keypair())
    assert public_key_hex(load_signing_key(path)) == first
    # A stray .pub alone also stops it: nothing half-written.
    lonely = tmp_path / "other"
    (tmp_path / "other.pub").write_text("stale\n")
    with pytest.raises(FileExistsError):
        write_keypair(lonely, generate_keypair())
    assert not lonely.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
def test_write_keypair_overwrite_resets_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "id_nexus"
    write_keypair(path, generate_keypair())
    path.chmod(0o644)
    second = generate_keypair()
    assert write_keypair(path, second, overwrite=True) == public_key_hex(second)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert public_key_hex(load_signing_key(path)) == public_key_hex(second)


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="needs O_NOFOLLOW")
def test_write_keypair_does_not_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    link = tmp_path / "id_nexus"
    link.symlink_to(target)
    with pytest.raises(FileExistsError):
        write_keypair(link, generate_keypair())
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP has no subclass of its own
        write_keypair(link, generate_keypair(), overwrite=True)
    assert target.read_text() == "precious"
