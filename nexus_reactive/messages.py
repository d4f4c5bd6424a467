"""The messages of the Nexus protocol (docs/protocol.md) as typed, immutable structs.

Every message is an envelope ``{"type": ..., "id": ..., "payload": ...}``. Each
known ``type`` is a tagged :class:`msgspec.Struct`, so that one prebuilt decoder
turns a frame into the right class in a single pass. A frame of a type that this
library does not know becomes an :class:`UnknownMessage` carrying its untyped
payload, so newer servers stay readable.

Use ``match`` to dispatch::

    match message:
        case ResponseMessage(payload=AskResponse(answer=answer)):
            print(answer)
        case ErrorMessage(payload=p):
            print(p.code, p.message)
"""

from __future__ import annotations

import os
from typing import Annotated, Any, ClassVar, TypeAlias

import msgspec

__all__ = [
    "KNOWN_TYPES",
    "AskMessage",
    "AskRequest",
    "AskResponse",
    "AuthMessage",
    "AuthOkMessage",
    "AuthOkPayload",
    "AuthPayload",
    "ChallengeMessage",
    "ChallengePayload",
    "ErrorMessage",
    "ErrorPayload",
    "KnownMessage",
    "Message",
    "PartialResponse",
    "ResponseChunkMessage",
    "ResponseChunkPayload",
    "ResponseMessage",
    "SealedMessage",
    "SealedPayload",
    "SignedMessage",
    "SignedPayload",
    "UnknownMessage",
    "Usage",
    "new_id",
]


#: The protocol: an id is a string of at most 128 characters.
MAX_ID_LENGTH = 128
MessageId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
#: Only an ``error`` may carry the empty id: it is about the connection as a whole.
ErrorId = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
#: W3C trace context (https://www.w3.org/TR/trace-context/) on an ``ask``: bounded, so
#: that a server never holds more than this per ask (a version 00 traceparent is 55).
MAX_TRACEPARENT_LENGTH = 128
MAX_TRACESTATE_LENGTH = 512
TraceParent = Annotated[str, msgspec.Meta(max_length=MAX_TRACEPARENT_LENGTH)]
TraceState = Annotated[str, msgspec.Meta(max_length=MAX_TRACESTATE_LENGTH)]


def new_id() -> str:
    """Return a fresh message id: a random UUID4 in hex, as the protocol asks.

    It is ``uuid.uuid4().hex`` without the object: ids are made 256 at a time from
    one ``os.urandom`` call and handed out one by one (a fifth of the cost, on every
    ask). Safe to call from any thread: each id is handed out once.
    """
    try:
        return _ids.pop()  # atomic: two threads never get the same one
    except IndexError:
        _ids.extend(_fresh_ids())
        return new_id()


# UUID4: the version nibble (byte 6) is 4, the variant bits (byte 8) are 10.
_VERSION = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))


def _fresh_ids(count: int = 256) -> list[str]:
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = raw[6::16].translate(_VERSION)
    raw[8::16] = raw[8::16].translate(_VARIANT)
    return raw.hex(" ", 16).split(" ")  # 32 hex digits each, split in C


_ids: list[str] = []


def _forget_pool() -> None:
    # A forked child must not hand out the ids its parent has in its pool.
    _ids.clear()


os.register_at_fork(after_in_child=_forget_pool)


class _Payload(msgspec.Struct, frozen=True, gc=False, omit_defaults=True):
    """Base of payloads: immutable, untracked by the GC, optional fields omitted."""


class AskRequest(_Payload, frozen=True):
    query: Annotated[str, msgspec.Meta(min_length=1)]
    team_id: str | None = None


class Usage(_Payload, frozen=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskResponse(_Payload, frozen=True):
    answer: str
    context: str | None = None
    usage: Usage | None = None


class ErrorPayload(_Payload, frozen=True):
    code: str
    message: str
    retry_after: float | None = None


class AuthPayload(_Payload, frozen=True):
    pubkey: str
    signature: str
    challenge: str
    # Signed or sealed frames (docs/protocol.md): asked for here, with the client's nonce
    # and, for sealed frames, its HPKE encapsulated key.
    frames: str | None = None
    nonce: str | None = None
    enc: str | None = None


class ChallengePayload(_Payload, frozen=True):
    challenge: str
    # Offered by a server that can sign (and seal) frames.
    server_key: str | None = None
    seal_key: str | None = None
    seal_sig: str | None = None


class AuthOkPayload(_Payload, frozen=True):
    pubkey: str


class ResponseChunkPayload(_Payload, frozen=True):
    delta: str
    index: int


class SignedPayload(_Payload, frozen=True):
    conn: str
    seq: int
    body: msgspec.Raw
    sig: str


class SealedPayload(_Payload, frozen=True):
    conn: str
    seq: int
    box: str
    sig: str


class _Envelope(
    msgspec.Struct, tag_field="type", frozen=True, kw_only=True, gc=False, omit_defaults=True
):
    """The envelope: the ``type`` tag comes from the class, ``id`` is the correlation key."""

    type: ClassVar[str]
    id: MessageId


class AskMessage(_Envelope, tag="ask", frozen=True):
    """Client to server: a question, answered by one ``response`` or ``error``.

    ``traceparent`` and ``tracestate`` (optional, in the envelope) carry the W3C trace
    context of the client's span for the ask (``telemetry=``), so that the server's
    spans join the client's trace.
    """

    type: ClassVar[str] = "ask"
    payload: AskRequest
    traceparent: TraceParent | None = None
    tracestate: TraceState | None = None


class AuthMessage(_Envelope, tag="auth", frozen=True):
    """Client to server: the signed answer to a ``challenge`` (same id)."""

    type: ClassVar[str] = "auth"
    payload: AuthPayload


class ResponseMessage(_Envelope, tag="response", frozen=True):
    """Server to client: the answer to the ``ask`` with this id."""

    type: ClassVar[str] = "response"
    payload: AskResponse


class ErrorMessage(_Envelope, tag="error", frozen=True):
    """Server to client: the request with this id failed (``""``: the whole connection)."""

    type: ClassVar[str] = "error"
    id: ErrorId
    payload: ErrorPayload


class ChallengeMessage(_Envelope, tag="challenge", frozen=True):
    """Server to client: key-pair authentication is required; sign this challenge."""

    type: ClassVar[str] = "challenge"
    payload: ChallengePayload


class AuthOkMessage(_Envelope, tag="auth_ok", frozen=True):
    """Server to client: the ``auth`` with this id was accepted."""

    type: ClassVar[str] = "auth_ok"
    payload: AuthOkPayload


class ResponseChunkMessage(_Envelope, tag="response_chunk", frozen=True):
    """Server to client: one piece of a streamed answer, ``index`` counting from 0."""

    type: ClassVar[str] = "response_chunk"
    payload: ResponseChunkPayload


class SignedMessage(_Envelope, tag="signed", frozen=True):
    """Either way: a message and its sender's signature, on a connection with signed frames."""

    type: ClassVar[str] = "signed"
    id: ErrorId
    payload: SignedPayload


class SealedMessage(_Envelope, tag="sealed", frozen=True):
    """Either way: an encrypted, signed message, on a connection with sealed frames."""

    type: ClassVar[str] = "sealed"
    id: ErrorId
    payload: SealedPayload


class UnknownMessage(msgspec.Struct, frozen=True, gc=False):
    """A well-formed envelope of a type this library does not know.

    ``payload`` is the decoded JSON value, untyped.
    """

    type: Annotated[str, msgspec.Meta(min_length=1)]
    id: MessageId
    payload: Any


class PartialResponse(msgspec.Struct, frozen=True, gc=False):
    """An answer still being streamed: the text so far. Not a wire message.

    A store shows it where the answer will be, growing as ``response_chunk``
    frames arrive, and replaces it with the final :class:`ResponseMessage`.
    ``payload.answer`` works as it does for a response.
    """

    type: ClassVar[str] = "response_partial"
    id: str
    payload: AskResponse
    pieces: int = 0


KnownMessage: TypeAlias = (
    AskMessage
    | AuthMessage
    | ResponseMessage
    | ErrorMessage
    | ChallengeMessage
    | AuthOkMessage
    | ResponseChunkMessage
    | SignedMessage
    | SealedMessage
)
Message: TypeAlias = KnownMessage | UnknownMessage

#: Every tagged class, in one list: the decoder's union is built from it.
KNOWN_CLASSES: tuple[type[_Envelope], ...] = (
    AskMessage,
    AuthMessage,
    ResponseMessage,
    ErrorMessage,
    ChallengeMessage,
    AuthOkMessage,
    ResponseChunkMessage,
    SignedMessage,
    SealedMessage,
)
KNOWN_TYPES: frozenset[str] = frozenset(cls.type for cls in KNOWN_CLASSES)


def ask_request(query: str, team_id: str | None = None, caller: str = "ask") -> AskRequest:
    """An ask's payload, checked before anything is queued; ``caller``: the method that
    the error names.

    Raises:
        InvalidArgument: the query is empty, only whitespace or not a string, or
            ``team_id`` is not a string (a ``UsageError``, and a ``ProtocolError`` as
            it used to be).
    """
    if (
        type(query) is str
        and query
        and not query.isspace()
        and (team_id is None or type(team_id) is str)
    ):
        return AskRequest(query, team_id)  # the common case: no import on every ask
    from .errors import InvalidArgument

    if not isinstance(query, str) or not query or query.isspace():
        got = repr(query) if query is None or isinstance(query, str) else type(query).__name__
        if isinstance(query, str) and query:  # blank: as empty, a question is not asked
            shown = repr(query) if len(query) <= 20 else f"{len(query)} characters"
            got = f"{shown}, only whitespace"
        raise InvalidArgument(
            f"{caller}(): query= must be a non-empty string, the question to ask "
            f"(got {got}); nothing was sent"
        )
    if team_id is not None and not isinstance(team_id, str):
        raise InvalidArgument(
            f"{caller}(): team_id= must be a string or None (got {type(team_id).__name__}); "
            "nothing was sent"
        )
    return AskRequest(query, team_id)
