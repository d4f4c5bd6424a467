"""Frames to messages and back: the one place where JSON is parsed or written.

Decoding is a single pass of one prebuilt msgspec decoder over the frame's bytes.
Only a frame that fails it pays for a second, generic look, which tells an
unknown-but-well-formed message (delivered as :class:`UnknownMessage`) from a
malformed one (a :class:`ProtocolError` carrying an excerpt of the frame).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from .errors import ProtocolError
from .messages import KNOWN_TYPES, AuthMessage, KnownMessage, Message, UnknownMessage

__all__ = ["DECODE_ERRORS", "decode", "decode_known", "encode", "redact", "to_message"]

_decoder = msgspec.json.Decoder(KnownMessage)
#: The typed decoder alone, for the receive loop: a known, valid message, else one of
#: :data:`DECODE_ERRORS`, after which :func:`decode` takes the second look.
decode_known = _decoder.decode
DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, UnicodeError)
_generic = msgspec.json.Decoder(UnknownMessage)
_encoder = msgspec.json.Encoder()
#: :func:`encode` without its Python call, for the ask path.
encode_fast = _encoder.encode
#: The bytes of ``AskMessage(id=I, payload=AskRequest(Q))`` around ``Q`` and ``I``, in
#: the order :func:`encode` writes them: ``ASK_HEAD + encode_fast(Q) + ASK_MID + I +
#: ASK_TAIL`` is that frame, for an id that needs no escaping (:func:`new_id`'s hex),
#: without building either struct (the ask path; a test holds the two equal).
ASK_HEAD, ASK_MID, ASK_TAIL = b'{"type":"ask","payload":{"query":', b'},"id":"', b'"}'


def decode(frame: bytes | str) -> Message:
    """Decode one frame into a typed message.

    Args:
        frame: the text frame's data, as bytes (fastest) or str.

    Returns:
        The typed message, or an :class:`UnknownMessage` for a well-formed
        envelope of a type this library does not know.

    Raises:
        ProtocolError: the frame is not JSON, not an envelope, or a known type
            with a wrong payload. It carries an excerpt of the frame.
    """
    try:
        return _decoder.decode(frame)
    except DECODE_ERRORS as exc:
        reason = str(exc)
    try:
        generic = _generic.decode(frame)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError):
        raise ProtocolError(
            f"not a valid message envelope ({reason}); expected a JSON object with "
            '"type", "id" and "payload"',
            frame,
        ) from None
    if generic.type not in KNOWN_TYPES:
        return generic
    raise ProtocolError(
        f"invalid {generic.type!r} message ({reason})", frame, message_id=generic.id
    )


def encode(message: Message) -> bytes:
    """Encode a message to the UTF-8 JSON bytes of one text frame."""
    return _encoder.encode(message)


def to_message(message: Message | Mapping[str, Any]) -> Message:
    """Validate something the application wants to send, and return it typed.

    Args:
        message: a message struct, or a mapping shaped like the envelope
            (``{"type": "ask", "id": "...", "payload": {"query": "..."}}``).

    Raises:
        ProtocolError: the mapping is not a valid message; nothing is sent.
    """
    if isinstance(message, (Mapping, UnknownMessage, *_KNOWN)):
        # Structs are not validated on construction: a round trip through the
        # decoder applies every constraint (non-empty query, id length...).
        try:
            return decode(_encoder.encode(message))
        except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode message: {exc}") from None
    raise ProtocolError(
        f"cannot send a {type(message).__name__}: pass a message struct "
        "(e.g. AskMessage) or a mapping with type, id and payload"
    )


_KNOWN: tuple[type, ...] = tuple(KnownMessage.__args__)


_SECRET_PAYLOAD_FIELDS = (b'"signature"',)


def redact(frame: bytes | str, limit: int = 2000) -> str:
    """A frame as text for logs: signatures hidden, long frames cut.

    API keys never travel in frames (only in the upgrade's header), so the only
    secret-like field is an ``auth`` message's signature.
    """
    data = frame.encode() if isinstance(frame, str) else frame
    if any(field in data for field in _SECRET_PAYLOAD_FIELDS):
        try:
            message = _decoder.decode(data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return "<unparsable frame with a signature field: redacted>"
        if isinstance(message, AuthMessage):
            message = msgspec.structs.replace(
                message,
                payload=msgspec.structs.replace(message.payload, signature="<redacted>"),
            )
        data = _encoder.encode(message)
    text = data.decode("utf-8", "replace")
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
