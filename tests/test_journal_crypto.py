"""The encrypted journal's construction and its keys, without files or sockets.

The construction is checked against the standard it is built from (RFC 5869's test
vector for HKDF-SHA256) and against its own documentation: a row sealed here is opened
with a key derived and associated data built by hand from what the module docstring
and docs/security.md say.
"""

from __future__ import annotations

import secrets
import struct
import traceback

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from nexus_reactive import ConfigError, PersistenceError, WebSocketConfig
from nexus_reactive.journal_crypto import (
    FORMAT,
    JOURNAL_ID_SIZE,
    JournalCipher,
    Unreadable,
    _derive,
    new_journal_id,
)
from nexus_reactive.journal_keys import check_persist_key, key_bytes, resolve_key

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
JOURNAL = bytes(range(100, 100 + JOURNAL_ID_SIZE))


def test_hkdf_matches_rfc_5869_test_case_1() -> None:
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    # HKDF-Expand's first block does not depend on the length asked for.
    assert _derive(ikm, salt, info).hex() == okm[:64]


def test_a_sealed_row_is_the_documented_construction() -> None:
    """Derive the data key and build the associated data by hand, as documented."""
    cipher = JournalCipher(KEY, JOURNAL)
    sealed = cipher.seal("outbox", 7, b'{"type":"ask"}', "ask-1", True)
    data_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=JOURNAL,
        info=b"nexus-reactive journal v1 data key",
    ).derive(KEY)
    associated = (
        b"nexus-reactive journal"
        + bytes([0, FORMAT])
        + JOURNAL
        + bytes([len(b"outbox")])
        + b"outbox"
        + struct.pack(">qBI", 7, 1, len(b"ask-1"))
        + b"ask-1"
    )
    assert sealed[0] == FORMAT
    nonce, body = sealed[1:13], sealed[13:]
    assert AESGCM(data_key).decrypt(nonce, body, associated) == b'{"type":"ask"}'
    assert len(sealed) == 1 + 12 + len(b'{"type":"ask"}') + 16
    # The stored key check is HKDF under its own label: not the data key.
    check = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=JOURNAL,
        info=b"nexus-reactive journal v1 key check",
    ).derive(KEY)
    assert cipher.check == check != data_key


def test_round_trip_and_a_fresh_nonce_for_every_seal() -> None:
    cipher = JournalCipher(KEY, JOURNAL)
    one = cipher.seal("history", 1, b"answer")
    two = cipher.seal("history", 1, b"answer")
    assert one != two  # random nonces: equal messages do not look equal
    assert cipher.open("history", 1, one) == cipher.open("history", 1, two) == b"answer"
    assert b"answer" not in one


@pytest.mark.parametrize(
    "place",
    [
        ("outbox", 2, "ask-1", True),  # another row
        ("history", 1, "ask-1", True),  # another table
        ("outbox", 1, "ask-2", True),  # another ask's id
        ("outbox", 1, "ask-1", False),  # its ask flag changed
    ],
)
def test_a_row_moved_elsewhere_does_not_open(place: tuple[str, int, str, bool]) -> None:
    cipher = JournalCipher(KEY, JOURNAL)
    sealed = cipher.seal("outbox", 1, b"question", "ask-1", True)
    assert cipher.open("outbox", 1, sealed, "ask-1", True) == b"question"
    table, seq, key, ask = place
    with pytest.raises(Unreadable, match="does not authenticate"):
        cipher.open(table, seq, sealed, key, ask)


def test_a_row_from_another_journal_with_the_same_key_does_not_open() -> None:
    sealed = JournalCipher(KEY, new_journal_id()).seal("history", 1, b"answer")
    with pytest.raises(Unreadable):
        JournalCipher(KEY, new_journal_id()).open("history", 1, sealed)


def test_tampered_truncated_and_foreign_rows_do_not_open() -> None:
    cipher = JournalCipher(KEY, JOURNAL)
    sealed = cipher.seal("history", 3, b"an answer of some length")
    for i in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[i] ^= 0x01
        with pytest.raises(Unreadable):
            cipher.open("history", 3, bytes(flipped))
    with pytest.raises(Unreadable, match="does not authenticate"):
        cipher.open("history", 3, sealed[:-1])
    with pytest.raises(Unreadable, match="truncated"):
        cipher.open("history", 3, sealed[:20])
    with pytest.raises(Unreadable, match="unknown row format 2"):
        cipher.open("history", 3, bytes([2]) + sealed[1:])
    with pytest.raises(Unreadable):
        JournalCipher(OTHER, JOURNAL).open("history", 3, sealed)


def test_the_key_check_recognises_the_key_only() -> None:
    stored = JournalCipher(KEY, JOURNAL).check
    assert JournalCipher(KEY, JOURNAL).matches(stored)
    assert not JournalCipher(OTHER, JOURNAL).matches(stored)
    assert not JournalCipher(KEY, new_journal_id()).matches(stored)


def test_the_cipher_shows_no_key_material() -> None:
    cipher = JournalCipher(KEY, JOURNAL)
    shown = repr(cipher)
    assert KEY.hex()[:8] not in shown and cipher.check.hex()[:8] not in shown
    assert JOURNAL.hex()[:8] in shown
    with pytest.raises(ValueError, match="32 bytes, not 5"):
        JournalCipher(b"short", JOURNAL)


# -- keys: what persist_key= accepts ------------------------------------------------------


def test_a_key_is_32_bytes_or_their_64_hex_characters() -> None:
    key = secrets.token_bytes(32)
    assert key_bytes(key) == key_bytes(bytearray(key)) == key_bytes(memoryview(key)) == key
    assert key_bytes(key.hex()) == key_bytes(key.hex().upper()) == key
    assert key_bytes(key.hex().encode() + b"\n") == key  # a key file with its newline
    assert key_bytes(f"  {key.hex()}\n") == key


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (b"too short", "got 9 bytes"),
        (b"x" * 33, "got 33 bytes"),
        ("correct horse battery staple", "a password is not a key"),
        ("ab" * 31, "64 hex characters"),
        (42, "got int"),
    ],
)
def test_anything_else_is_a_config_error_saying_how_to_make_one(value: object, said: str) -> None:
    with pytest.raises(ConfigError, match=said) as info:
        key_bytes(value)
    text = str(info.value)
    if not isinstance(value, int):
        assert "nexus-reactive journal keygen" in text and "secrets.token_bytes(32)" in text
        shown = value if isinstance(value, str) else value.decode()
        assert shown not in text  # never the value itself


def test_the_config_checks_the_key_and_never_shows_it(tmp_path: object) -> None:
    key = secrets.token_bytes(32)
    config = WebSocketConfig(persist="client.db", persist_key=key.hex())
    assert "persist_key=<set>" in repr(config) and key.hex() not in repr(config)
    provided = WebSocketConfig(persist="client.db", persist_key=lambda: key)
    assert "persist_key=<callable>" in repr(provided)
    with pytest.raises(ConfigError, match="persist_key= is set but persist= is not"):
        WebSocketConfig(persist_key=key)
    with pytest.raises(ConfigError, match="got 3 bytes"):
        WebSocketConfig(persist="client.db", persist_key=b"abc")
    # From options too, as use_websocket(...) builds it.
    assert WebSocketConfig.from_options(config, persist_key=None).persist_key is None
    check_persist_key(None, None)


def test_a_provider_is_called_and_its_failures_say_so_without_the_secret() -> None:
    key = secrets.token_bytes(32)
    calls: list[int] = []

    def provider() -> bytes:
        calls.append(1)
        return key

    assert resolve_key(provider, "j.db") == key and calls == [1]
    secret = "hunter2-the-secret"

    def broken() -> bytes:
        raise KeyError(secret)

    with pytest.raises(PersistenceError, match="provider raised KeyError") as info:
        resolve_key(broken, "j.db")
    assert secret not in str(info.value) and "j.db" in str(info.value)
    # Nor in what a log or an uncaught exception shows: the whole chain, as printed.
    shown = "".join(traceback.format_exception(info.value))
    assert secret not in shown, shown
    assert info.value.__cause__ is None and info.value.__context__ is None
    # Where the provider failed is said instead, to find it without its text.
    assert f"{__name__.rsplit('.', 1)[-1]}.py" in str(info.value)
    with pytest.raises(ConfigError, match="the key persist_key's provider returned"):
        resolve_key(lambda: "not a key", "j.db")

    async def later() -> bytes:
        return key

    with pytest.raises(ConfigError, match="not an awaitable"):
        resolve_key(later, "j.db")  # type: ignore[arg-type]
