"""Agreeing on signed or sealed frames in the challenge exchange (docs/protocol.md,
"Signed and sealed frames"): the client's half and the server's, no I/O.

The server's ``challenge`` offers its public key (``server_key``) and, when it can
encrypt, a fresh X25519 key for this connection signed by it (``seal_key``,
``seal_sig``). The client checks ``server_key`` against its pin and asks in its
``auth`` (``frames``, ``nonce``, ``enc``); both then hold a :class:`FrameGuard`
for the connection, and the server's ``auth_ok`` is its first signed frame.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from .errors import AuthenticationError, NexusConnectionError
from .framing import (
    CLIENT_TO_SERVER,
    MODES,
    NONCE_BYTES,
    SERVER_TO_CLIENT,
    FrameGuard,
    FramesMode,
    connection_id,
    raw_public,
)
from .messages import AuthPayload, ChallengePayload

__all__ = ["ClientOffer", "FrameKeys", "accept", "offer", "server_offer"]

_NOT_RETRYING = "Not retrying."


@dataclass(frozen=True, slots=True)
class ClientOffer:
    """What the client asks for in its ``auth``, and its guard once the server agrees."""

    mode: FramesMode
    nonce: bytes
    enc: bytes
    guard: FrameGuard

    def fields(self) -> dict[str, str]:
        """The ``auth`` payload's fields for this offer."""
        extra = {"frames": self.mode, "nonce": self.nonce.hex()}
        if self.enc:
            extra["enc"] = self.enc.hex()
        return extra


def offer(
    challenge: ChallengePayload,
    key: Ed25519PrivateKey,
    pinned: Ed25519PublicKey,
    encrypt: bool,
) -> ClientOffer:
    """The client's answer to a challenge, with signed (or sealed) frames asked for.

    Raises:
        AuthenticationError: the server offers no signed frames, its key is not the
            pinned one, or it cannot encrypt when ``encrypt`` is set (fatal).
        NexusConnectionError: its seal key's signature does not verify (retryable:
            something on the way changed the challenge).
    """
    pin = raw_public(pinned).hex()
    if challenge.server_key is None:
        raise AuthenticationError(
            "the server offers no signed frames (its challenge names no server key): it "
            "runs without a signing key, or does not support them. Start it with a "
            f"signing key, or remove server_key. {_NOT_RETRYING}"
        )
    if challenge.server_key.lower() != pin:
        raise AuthenticationError(
            f"the server's public key is {challenge.server_key[:64]}, not the pinned "
            f"server_key {pin}: the server's key changed (rotated?) or something on the "
            "way impersonates it. If the key was rotated on purpose, pin the new one (the "
            f"server prints it at start). {_NOT_RETRYING}"
        )
    nonce = secrets.token_bytes(NONCE_BYTES)
    text = challenge.challenge
    if not encrypt:
        conn = connection_id("signed", text, nonce, bytes.fromhex(pin), raw_public(key))
        guard = FrameGuard("signed", conn, CLIENT_TO_SERVER, key, pinned)
        return ClientOffer("signed", nonce, b"", guard)
    from . import sealing

    if challenge.seal_key is None or challenge.seal_sig is None:
        raise AuthenticationError(
            "the server cannot encrypt frames (its challenge offers no seal key): install "
            "the encryption extra on the server, or remove encrypt=True. "
            f"{_NOT_RETRYING}"
        )
    try:
        seal_key, seal_sig = bytes.fromhex(challenge.seal_key), bytes.fromhex(challenge.seal_sig)
    except ValueError:
        seal_key = seal_sig = b""
    if len(seal_key) != 32 or not sealing.certified(pinned, text, seal_key, seal_sig):
        raise NexusConnectionError(
            "the server's seal key is not signed by the pinned server_key: something on "
            "the way changed the challenge; reconnecting"
        )
    enc, channel = sealing.client_channel(seal_key, text, nonce)
    conn = connection_id("sealed", text, nonce, bytes.fromhex(pin), raw_public(key), enc)
    guard = FrameGuard("sealed", conn, CLIENT_TO_SERVER, key, pinned, channel)
    return ClientOffer("sealed", nonce, enc, guard)


@dataclass(frozen=True, slots=True, repr=False)
class FrameKeys:
    """The server's frame settings: its key, whether it can encrypt, what it requires.

    Attributes:
        key: the server's Ed25519 private key (never shown).
        public_hex: its public key, as clients pin it.
        can_seal: the ``encryption`` extra is installed.
        require: the least a client must ask for; ``None``: plain frames are fine.
    """

    key: Ed25519PrivateKey
    public_hex: str
    can_seal: bool
    require: FramesMode | None

    def __repr__(self) -> str:
        return f"FrameKeys(public_hex={self.public_hex!r}, require={self.require!r})"


def server_offer(keys: FrameKeys, challenge: str) -> tuple[dict[str, str], X25519PrivateKey | None]:
    """The ``challenge`` payload's extra fields, and the connection's seal key."""
    fields = {"server_key": keys.public_hex}
    if not keys.can_seal:
        return fields, None
    from . import sealing

    seal_key = sealing.new_seal_key()
    fields["seal_key"] = raw_x25519(seal_key).hex()
    fields["seal_sig"] = sealing.certify(keys.key, challenge, seal_key).hex()
    return fields, seal_key


def raw_x25519(key: X25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def accept(
    keys: FrameKeys | None,
    challenge: str,
    auth: AuthPayload,
    client_key: Ed25519PublicKey,
    seal_key: X25519PrivateKey | None,
) -> FrameGuard | str | None:
    """The server's decision on an authenticated client's ``auth``.

    Returns:
        The connection's guard; ``None`` for plain frames; or, as a string, why the
        connection is refused (``error`` ``frames_refused``, close 4406).
    """
    asked = auth.frames
    require = keys.require if keys is not None else None
    if asked is None:
        if require is None:
            return None
        return (
            f"this server requires {require} frames: pin its public key (server_key=..., "
            "--server-key)" + (" and set encrypt=True (--encrypt)" if require == "sealed" else "")
        )
    if asked not in MODES:
        return f"frames must be one of {', '.join(MODES)}, not {asked[:20]!r}"
    if keys is None:
        return (
            "this server cannot sign frames: it runs without a signing key. Remove "
            "server_key, or start the server with one (--signing-key)"
        )
    if require is not None and MODES.index(asked) < MODES.index(require):
        return (
            f"this server requires {require} frames, and {asked} were asked for: also set "
            "encrypt=True (--encrypt)"
        )
    try:
        nonce = bytes.fromhex(auth.nonce or "")
    except ValueError:
        nonce = b""
    if len(nonce) != NONCE_BYTES:
        return f"nonce must be {NONCE_BYTES} random bytes as {2 * NONCE_BYTES} hex digits"
    server_raw, client_raw = raw_public(keys.key), raw_public(client_key)
    if asked == "signed":
        conn = connection_id("signed", challenge, nonce, server_raw, client_raw)
        return FrameGuard("signed", conn, SERVER_TO_CLIENT, keys.key, client_key)
    if seal_key is None:
        return "this server cannot encrypt frames (its encryption extra is not installed)"
    from . import sealing

    try:
        enc = bytes.fromhex(auth.enc or "")
        channel = sealing.server_channel(enc, seal_key, challenge, nonce)
    except ValueError:
        return "enc must be the HPKE encapsulated key, 32 bytes as 64 hex digits"
    conn = connection_id("sealed", challenge, nonce, server_raw, client_raw, enc)
    return FrameGuard("sealed", conn, SERVER_TO_CLIENT, keys.key, client_key, channel)
