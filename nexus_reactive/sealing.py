"""End-to-end encryption of sealed frames: HPKE (RFC 9180) from pyhpke (the
``encryption`` extra), on cryptography's primitives.

The suite: base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.

- For each connection the server makes a fresh X25519 key pair and signs its public
  half with its Ed25519 key, in the ``challenge`` (:func:`certify`); a client that
  pinned the Ed25519 key checks that signature (:func:`certified`).
- The client sets up an HPKE sender context to that key (``SetupBaseS``) and sends
  the encapsulated key ``enc`` in its ``auth``; the server sets up the recipient
  context (``SetupBaseR``). Client-to-server frames are that context's
  ``Seal``/``Open``: its own sequence numbers make the nonces.
- Server-to-client frames use a key and base nonce exported from the same context
  (RFC 9180, section 9.8, "Bidirectional Encryption"), with ChaCha20-Poly1305 and
  the nonce ``base_nonce XOR seq`` as HPKE computes its own.

The AEAD's associated data is the frame's signed header (label, direction,
connection id, sequence number), so a box is bound to its place in its connection.
No key, context or plaintext leaves this module in a repr, log or error.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import ConfigError

__all__ = [
    "INFO_LABEL",
    "SEAL_KEY_LABEL",
    "Channel",
    "available",
    "certified",
    "certify",
    "client_channel",
    "new_seal_key",
    "server_channel",
    "suite",
]

#: What the server signs with its seal key: this label, the challenge, the key.
SEAL_KEY_LABEL = b"nexus-reactive seal key v1\x00"
#: HPKE's ``info``: this label, the challenge and the client's nonce.
INFO_LABEL = b"nexus-reactive hpke v1\x00"
#: The exporter contexts of the server-to-client key and base nonce (RFC 9180, 9.8).
_RESPONSE_KEY = b"nexus-reactive response key"
_RESPONSE_NONCE = b"nexus-reactive response nonce"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_INSTALL = "encrypted frames need the encryption extra: pip install 'nexus-reactive[encryption]'"


def available() -> bool:
    """Whether pyhpke is installed (the ``encryption`` extra)."""
    return importlib.util.find_spec("pyhpke") is not None


def require() -> None:
    """Raise :class:`ConfigError` unless the ``encryption`` extra is installed."""
    if not available():
        raise ConfigError(_INSTALL)


def suite() -> Any:
    """The HPKE cipher suite: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305."""
    from pyhpke import AEADId, CipherSuite, KDFId, KEMId

    return CipherSuite.new(
        KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.CHACHA20_POLY1305
    )


def new_seal_key() -> X25519PrivateKey:
    """A fresh X25519 key for one connection (the server's)."""
    return X25519PrivateKey.generate()


def _raw(key: X25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def certify(signer: Ed25519PrivateKey, challenge: str, seal_key: X25519PrivateKey) -> bytes:
    """The server's signature over its seal key for the connection of ``challenge``."""
    return signer.sign(SEAL_KEY_LABEL + challenge.encode() + _raw(seal_key.public_key()))


def certified(pinned: Ed25519PublicKey, challenge: str, seal_key: bytes, sig: bytes) -> bool:
    """Whether ``sig`` is the pinned key's signature over ``seal_key`` for ``challenge``."""
    try:
        pinned.verify(sig, SEAL_KEY_LABEL + challenge.encode() + seal_key)
    except Exception:
        return False
    return True


def info(challenge: str, nonce: bytes) -> bytes:
    """HPKE's ``info`` for a connection: the label, the challenge, the client's nonce."""
    return INFO_LABEL + challenge.encode() + nonce


class Channel:
    """One connection's two AEAD directions: ``seal`` what this side sends, ``open``
    what it receives. Each direction's sequence numbers count from 0, one per frame.

    Built by :func:`client_channel` or :func:`server_channel`, never directly.
    """

    __slots__ = ("_base", "_hpke", "_is_client", "_response", "_seq")

    def __init__(self, hpke_context: Any, is_client: bool) -> None:
        self._hpke = hpke_context
        self._is_client = is_client
        self._response = ChaCha20Poly1305(hpke_context.export(_RESPONSE_KEY, _KEY_BYTES))
        self._base = int.from_bytes(hpke_context.export(_RESPONSE_NONCE, _NONCE_BYTES), "big")
        self._seq = 0  # the server-to-client direction's

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt one outgoing frame."""
        if self._is_client:
            box: bytes = self._hpke.seal(plaintext, aad)
            return box
        return self._response.encrypt(self._next_nonce(), plaintext, aad)

    def open(self, box: bytes, aad: bytes) -> bytes:
        """Decrypt one incoming frame; raises if it does not authenticate."""
        if self._is_client:
            return self._response.decrypt(self._next_nonce(), box, aad)
        plaintext: bytes = self._hpke.open(box, aad)
        return plaintext

    def _next_nonce(self) -> bytes:
        seq = self._seq
        self._seq = seq + 1
        return (self._base ^ seq).to_bytes(_NONCE_BYTES, "big")

    def __repr__(self) -> str:
        return f"<Channel {'client' if self._is_client else 'server'}>"  # never a key


def client_channel(seal_key: bytes, challenge: str, nonce: bytes) -> tuple[bytes, Channel]:
    """Set up the client's side: encapsulate to the server's seal key.

    Returns:
        ``enc`` (32 bytes, sent in ``auth``) and the channel.
    """
    from pyhpke import KEMKey

    recipient = KEMKey.from_pyca_cryptography_key(X25519PublicKey.from_public_bytes(seal_key))
    enc, context = suite().create_sender_context(recipient, info(challenge, nonce))
    return bytes(enc), Channel(context, is_client=True)


def server_channel(enc: bytes, seal_key: X25519PrivateKey, challenge: str, nonce: bytes) -> Channel:
    """Set up the server's side from the client's ``enc``.

    Raises:
        ValueError: ``enc`` is not a valid X25519 public key.
    """
    from pyhpke import KEMKey

    try:
        context = suite().create_recipient_context(
            enc, KEMKey.from_pyca_cryptography_key(seal_key), info(challenge, nonce)
        )
    except Exception:
        raise ValueError("enc is not a valid encapsulated key") from None
    return Channel(context, is_client=False)
