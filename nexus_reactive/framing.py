"""Signed and sealed frames (docs/protocol.md, "Signed and sealed frames"), both sides.

Once a connection has negotiated them, every frame each way is an envelope:

- ``signed``: the message itself (``body``, its JSON as sent) with the sender's
  Ed25519 signature;
- ``sealed``: the message encrypted (``box``, see :mod:`.sealing`), then signed.

The signature covers a domain-separated byte string: a label naming the kind, the
direction (so a frame cannot be reflected back to its sender), the connection id
(so a frame of another connection fails), the sequence number (so a replayed,
dropped or reordered frame fails) and the body's exact bytes. A
:class:`FrameGuard` holds one connection's keys and counters: :meth:`FrameGuard.wrap`
on the way out, :meth:`FrameGuard.unwrap` on the way in, before anything decodes
the message. No sockets here: the client (:mod:`.guarded`) and the server
(``server/frames.py``) do the talking.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING, Literal, TypeAlias

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .messages import (
    SealedMessage,
    SealedPayload,
    SignedMessage,
    SignedPayload,
    UnknownMessage,
)
from .public_keys import PublicKeySource, load_public_key

if TYPE_CHECKING:
    from .sealing import Channel

__all__ = [
    "CLIENT_TO_SERVER",
    "CLOSE_BAD_FRAME",
    "CLOSE_FRAMES_REFUSED",
    "MODES",
    "SERVER_TO_CLIENT",
    "FrameGuard",
    "FrameRefused",
    "FramesMode",
    "ServerKeySource",
    "connection_id",
    "load_server_key",
]

FramesMode: TypeAlias = Literal["signed", "sealed"]
#: The modes, weakest first: a server that requires ``signed`` also takes ``sealed``.
MODES: tuple[FramesMode, ...] = ("signed", "sealed")
#: A pinned server public key: 64 hex digits, a ``.pub`` file as ``keygen`` writes
#: it, a PEM (or its text) or OpenSSH public key file, or the key object.
ServerKeySource: TypeAlias = PublicKeySource

#: Close codes (docs/protocol.md): the two sides did not agree on signed or sealed
#: frames (fatal); a frame was refused (retried: the asks in flight go again).
CLOSE_FRAMES_REFUSED = 4406
CLOSE_BAD_FRAME = 4409

#: The direction byte of the signed bytes.
CLIENT_TO_SERVER = b"C"
SERVER_TO_CLIENT = b"S"
_LABELS: dict[str, bytes] = {
    "signed": b"nexus-reactive signed v1\x00",
    "sealed": b"nexus-reactive sealed v1\x00",
}
_CONN_LABEL = b"nexus-reactive conn v1\x00"
#: The connection id: the first 16 bytes of the transcript's SHA-256.
CONN_BYTES = 16
NONCE_BYTES = 32

_envelope = msgspec.json.Decoder(SignedMessage | SealedMessage)
_generic = msgspec.json.Decoder(UnknownMessage)
_encode = msgspec.json.Encoder().encode
_ENVELOPE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeError)


class FrameRefused(Exception):
    """A frame failed its checks; the connection is closed with 4409.

    Attributes:
        kind: ``unsigned``, ``malformed``, ``bad_signature``, ``other_connection``,
            ``replayed``, ``reordered``, ``undecryptable``, or ``after_refusal``.
        reason: what was wrong, fit to send and to log (never the frame).
    """

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def connection_id(
    mode: FramesMode,
    challenge: str,
    nonce: bytes,
    server_key: bytes,
    client_key: bytes,
    enc: bytes = b"",
) -> bytes:
    """The connection id both sides sign under: fresh for each, bound to both keys.

    SHA-256 over the label, the mode, the challenge (the server's nonce), the
    client's nonce, both raw public keys and the HPKE ``enc`` (empty when signed
    only), each variable-length field prefixed with its length; the first 16 bytes.
    """
    text = challenge.encode("utf-8")
    transcript = b"".join(
        (
            _CONN_LABEL,
            mode.encode(),
            b"\x00",
            len(text).to_bytes(2, "big"),
            text,
            nonce,
            server_key,
            client_key,
            len(enc).to_bytes(2, "big"),
            enc,
        )
    )
    return hashlib.sha256(transcript).digest()[:CONN_BYTES]


class FrameGuard:
    """One connection's signed or sealed frames: its keys, id and sequence numbers.

    Args:
        mode: ``signed`` or ``sealed``.
        conn: the connection id (:func:`connection_id`).
        outgoing: the direction of the frames this side sends
            (:data:`CLIENT_TO_SERVER` or :data:`SERVER_TO_CLIENT`).
        own_key: this side's private key, to sign with.
        peer_key: the other side's public key, to verify with.
        channel: the encryption of a sealed connection (:mod:`.sealing`).
    """

    __slots__ = (
        "_channel",
        "_conn",
        "_conn_hex",
        "_in_prefix",
        "_label",
        "_out_prefix",
        "_own",
        "_peer",
        "failed",
        "mode",
        "received",
        "sent",
    )

    def __init__(
        self,
        mode: FramesMode,
        conn: bytes,
        outgoing: bytes,
        own_key: Ed25519PrivateKey,
        peer_key: Ed25519PublicKey,
        channel: Channel | None = None,
    ) -> None:
        if (mode == "sealed") is (channel is None):
            raise ValueError("a sealed connection needs a channel, a signed one none")
        incoming = SERVER_TO_CLIENT if outgoing == CLIENT_TO_SERVER else CLIENT_TO_SERVER
        self.mode = mode
        self._label = _LABELS[mode]
        self._conn = conn
        self._conn_hex = conn.hex()
        self._out_prefix = self._label + outgoing + conn
        self._in_prefix = self._label + incoming + conn
        self._own = own_key
        self._peer = peer_key
        self._channel = channel
        #: Frames sent and received so far: the next sequence numbers.
        self.sent = 0
        self.received = 0
        #: A frame was refused: every later one is too (the connection is closing).
        self.failed = False

    def wrap(self, frame: bytes) -> bytes:
        """The envelope of one outgoing message (``frame``: its encoded JSON)."""
        seq = self.sent
        self.sent = seq + 1
        header = self._out_prefix + seq.to_bytes(8, "big")
        channel = self._channel
        if channel is None:
            sig = self._own.sign(header + frame).hex()
            payload = SignedPayload(self._conn_hex, seq, msgspec.Raw(frame), sig)
            return _encode(SignedMessage(id="", payload=payload))
        box = channel.seal(frame, header)
        sig = self._own.sign(header + box).hex()
        sealed = SealedPayload(self._conn_hex, seq, base64.b64encode(box).decode(), sig)
        return _encode(SealedMessage(id="", payload=sealed))

    def wrapped_size(self, frame: bytes) -> int:
        """An upper bound on the size of :meth:`wrap`'s result for ``frame``.

        The body goes verbatim into a signed frame; a sealed one carries it in
        base64, 16 bytes of tag more.
        """
        if self._channel is None:
            return len(frame) + 256
        return 4 * ((len(frame) + 16 + 2) // 3) + 256

    def unwrap(self, frame: bytes | str) -> bytes:
        """Check one incoming frame; return the message's JSON, for the codec.

        Raises:
            FrameRefused: the frame is not an envelope of this connection's mode, its
                signature does not verify, or its sequence number is not the next;
                or an earlier frame was refused.
        """
        if self.failed:
            raise FrameRefused("after_refusal", "an earlier frame of this connection was refused")
        try:
            return self._check(frame)
        except FrameRefused:
            self.failed = True
            raise

    def _check(self, frame: bytes | str) -> bytes:
        try:
            envelope = _envelope.decode(frame)
        except _ENVELOPE_ERRORS:
            raise self._not_an_envelope(frame) from None
        payload = envelope.payload
        seq = payload.seq
        if envelope.type != self.mode:
            raise FrameRefused(
                "unsigned", f"a {envelope.type} frame on a connection with {self.mode} frames"
            )
        if not 0 <= seq < 1 << 64:
            raise FrameRefused("malformed", f"sequence number {seq} is out of range")
        header = self._in_prefix + seq.to_bytes(8, "big")
        if type(payload) is SignedPayload:
            body = bytes(payload.body)
            signed = header + body
        else:
            assert type(payload) is SealedPayload
            try:
                body = base64.b64decode(payload.box, validate=True)
            except (binascii.Error, ValueError):
                raise FrameRefused("malformed", "a sealed frame whose box is not base64") from None
            signed = header + body
        try:
            self._peer.verify(bytes.fromhex(payload.sig), signed)
        except (InvalidSignature, ValueError):
            if payload.conn != self._conn_hex:
                raise FrameRefused(
                    "other_connection",
                    "a frame of another connection (its connection id is not this one's): "
                    "replayed from elsewhere",
                ) from None
            raise FrameRefused(
                "bad_signature",
                "the signature does not verify with the peer's key: the frame was "
                "changed on the way, or signed by another key",
            ) from None
        expected = self.received
        if seq != expected:
            if seq < expected:
                raise FrameRefused(
                    "replayed",
                    f"sequence number {seq} was received already (next expected: "
                    f"{expected}): a replayed frame",
                )
            raise FrameRefused(
                "reordered",
                f"sequence number {seq} where {expected} was expected: a frame was "
                "dropped or reordered on the way",
            )
        self.received = expected + 1
        if self._channel is None:
            return body
        try:
            return self._channel.open(body, header)
        except Exception:  # the AEAD's own failure: never its details
            raise FrameRefused(
                "undecryptable", "a sealed frame that does not decrypt with this connection's keys"
            ) from None

    def _not_an_envelope(self, frame: bytes | str) -> FrameRefused:
        try:
            kind = _generic.decode(frame).type
        except _ENVELOPE_ERRORS:
            return FrameRefused(
                "malformed",
                "a frame that is not a whole message envelope: truncated or garbled on the way",
            )
        if kind in _LABELS:
            return FrameRefused("malformed", f"a {kind} frame whose fields are malformed")
        return FrameRefused(
            "unsigned",
            f"an unsigned {kind[:40]!r} frame on a connection with {self.mode} frames: the "
            "peer stopped signing, or something on the way sent it",
        )

    def __repr__(self) -> str:
        counts = f"sent={self.sent} received={self.received}"
        return f"<FrameGuard {self.mode} conn={self._conn_hex} {counts}>"


def load_server_key(source: ServerKeySource) -> Ed25519PublicKey:
    """Read a pinned server public key.

    Args:
        source: 64 hex digits (either case); a PEM public key's text; the path of a
            file holding either or an OpenSSH public key (``nexus-reactive keygen``
            and ``ssh-keygen`` write ``<key>.pub``); or the key object.

    Raises:
        ConfigError: it is none of these, or the file cannot be read. The message
            says which form was expected.
    """
    return load_public_key(source, name="server_key")


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of a public key (of a private key's public half)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
