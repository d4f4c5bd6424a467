"""The encrypted journal's construction: key derivation, the AEAD, and what binds a row.

Standard parts from ``cryptography``, nothing invented:

- **Keys.** The user's key ``K`` (32 random bytes, ``persist_key=``) is never stored.
  Each journal has a random 16-byte id, stored in the clear. HKDF-SHA256 (RFC 5869)
  with the journal id as salt derives, under two distinct ``info`` labels, the 32-byte
  AES-256-GCM key that seals the rows and a 32-byte *key check* that is stored. A key
  whose check differs is the wrong key: detected when the journal opens, before any
  row is read or written. HKDF's outputs are independent: the check reveals neither
  ``K`` nor the data key.
- **Rows.** Each stored message is sealed with AES-256-GCM (NIST SP 800-38D) under a
  fresh random 96-bit nonce: ``format byte || nonce || ciphertext || 16-byte tag``.
  Random nonces keep a key's collision risk negligible for 2**32 seals (NIST's
  bound); a journal's data key is its own (the id is the salt), and a rotation
  (``journal rekey``) starts a new one.
- **Binding.** The associated data of a row is a fixed label, the format, the journal
  id, the table, the row's sequence number, whether it is an ask, and its key (the
  ask's id). A ciphertext moved to another row, table or journal, or a row whose
  ``ask`` flag or id was changed, fails authentication like a changed byte.

What it does not hide: the ask ids (the outbox's keys, in the clear so that a
message can be removed when it is done), how many rows there are, their sizes, and
when they were written. What it cannot detect: a row deleted whole, or the whole file
replaced by an older copy of itself (see docs/security.md).
"""

from __future__ import annotations

import hmac
import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .journal_keys import KEY_SIZE

__all__ = [
    "CIPHER",
    "FORMAT",
    "JOURNAL_ID_SIZE",
    "JournalCipher",
    "Unreadable",
    "new_journal_id",
]

#: The sealed-row format this version writes (its first byte) and reads.
FORMAT = 1
#: The construction, as the journal's meta table names it.
CIPHER = "AES-256-GCM, HKDF-SHA256"
#: Bytes in a journal's id (the HKDF salt).
JOURNAL_ID_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16

_LABEL = b"nexus-reactive journal"
_DATA_INFO = b"nexus-reactive journal v1 data key"
_CHECK_INFO = b"nexus-reactive journal v1 key check"
_VERSION = bytes([FORMAT])
# A row's number, its ask flag, and its id's length, in the associated data.
_ROW = struct.Struct(">qBI").pack


class Unreadable(Exception):
    """A sealed value that does not authenticate: changed, truncated, or moved."""


def new_journal_id() -> bytes:
    """A fresh random journal id."""
    return os.urandom(JOURNAL_ID_SIZE)


def _derive(key: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


class JournalCipher:
    """Seals and opens the rows of one journal, under one key.

    Args:
        key: the user's 32-byte key.
        journal_id: the journal's id (:func:`new_journal_id` for a new journal).

    Its ``repr`` shows the journal id's first bytes, never key material.
    """

    __slots__ = ("_decrypt", "_encrypt", "_heads", "_prefix", "check", "journal_id")

    def __init__(self, key: bytes, journal_id: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"a journal key is {KEY_SIZE} bytes, not {len(key)}")
        if len(journal_id) != JOURNAL_ID_SIZE:
            raise ValueError(f"a journal id is {JOURNAL_ID_SIZE} bytes, not {len(journal_id)}")
        self.journal_id = journal_id
        #: What the journal stores to recognise this key (not secret).
        self.check = _derive(key, journal_id, _CHECK_INFO)
        aead = AESGCM(_derive(key, journal_id, _DATA_INFO))
        self._encrypt, self._decrypt = aead.encrypt, aead.decrypt
        self._prefix = _LABEL + bytes([0, FORMAT]) + journal_id
        self._heads: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"<JournalCipher journal {self.journal_id.hex()[:8]}>"

    def matches(self, check: bytes) -> bool:
        """Whether a journal's stored key check is this key's (in constant time)."""
        return hmac.compare_digest(self.check, check)

    def _associated(self, table: str, seq: int, key: str, ask: bool) -> bytes:
        head = self._heads.get(table)
        if head is None:
            name = table.encode()
            head = self._heads[table] = self._prefix + bytes([len(name)]) + name
        ident = key.encode("utf-8", "surrogatepass")
        return head + _ROW(seq, 1 if ask else 0, len(ident)) + ident

    def seal(
        self, table: str, seq: int, plaintext: bytes, key: str = "", ask: bool = False
    ) -> bytes:
        """``plaintext`` sealed for row ``seq`` of ``table`` (with its ``key`` and ``ask``)."""
        nonce = os.urandom(NONCE_SIZE)
        return b"".join(
            (
                _VERSION,
                nonce,
                self._encrypt(nonce, plaintext, self._associated(table, seq, key, ask)),
            )
        )

    def open(self, table: str, seq: int, sealed: bytes, key: str = "", ask: bool = False) -> bytes:
        """The plaintext of a row sealed by :meth:`seal` for the same place.

        Raises:
            Unreadable: it does not authenticate here (the reason says how it failed).
        """
        if len(sealed) < 1 + NONCE_SIZE + TAG_SIZE:
            raise Unreadable(f"too short to be a sealed row ({len(sealed)} bytes): truncated")
        if sealed[0] != FORMAT:
            raise Unreadable(f"unknown row format {sealed[0]} (this version reads {FORMAT})")
        nonce, body = sealed[1 : 1 + NONCE_SIZE], sealed[1 + NONCE_SIZE :]
        try:
            return self._decrypt(nonce, body, self._associated(table, seq, key, ask))
        except InvalidTag:
            raise Unreadable(
                "it does not authenticate: changed, truncated, or moved from another row or journal"
            ) from None
