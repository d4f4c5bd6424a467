"""The codec and the message structs: frames to typed messages, pure and fast (the other
direction: test_codec_encode.py; the property: test_codec_property.py)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from nexus_reactive import codec
from nexus_reactive.errors import FRAME_EXCERPT, ProtocolError
from nexus_reactive.messages import (
    KNOWN_CLASSES,
    KNOWN_TYPES,
    MAX_ID_LENGTH,
    AskMessage,
    AskRequest,
    AskResponse,
    AuthMessage,
    AuthOkMessage,
    AuthOkPayload,
    AuthPayload,
    ChallengeMessage,
    ChallengePayload,
    ErrorMessage,
    ErrorPayload,
    Message,
    ResponseChunkMessage,
    ResponseChunkPayload,
    ResponseMessage,
    SealedMessage,
    SealedPayload,
    SignedMessage,
    SignedPayload,
    UnknownMessage,
    Usage,
)

ID = "9f1c2b"


def frame(type_: Any, id_: Any = ID, payload: Any = None, **extra: Any) -> bytes:
    envelope: dict[str, Any] = {"type": type_, "id": id_, "payload": payload, **extra}
    return json.dumps(envelope).encode()


# One wire frame and the message it must decode to, for every known type.
KNOWN_CASES: list[tuple[bytes, Message]] = [
    (
        frame("ask", payload={"query": "What is Nexus?"}),
        AskMessage(id=ID, payload=AskRequest(query="What is Nexus?")),
    ),
    (
        frame("ask", payload={"query": "q", "team_id": "team-7"}),
        AskMessage(id=ID, payload=AskRequest(query="q", team_id="team-7")),
    ),
    (
        frame("auth", payload={"pubkey": "ab" * 32, "signature": "cd" * 64, "challenge": "xyz"}),
        AuthMessage(
            id=ID, payload=AuthPayload(pubkey="ab" * 32, signature="cd" * 64, challenge="xyz")
        ),
    ),
    (
        frame("response", payload={"answer": "42"}),
        ResponseMessage(id=ID, payload=AskResponse(answer="42")),
    ),
    (
        frame(
            "response",
            payload={
                "answer": "42",
                "context": "docs",
                "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
            },
        ),
        ResponseMessage(
            id=ID,
            payload=AskResponse(
                answer="42",
                context="docs",
                usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7),
            ),
        ),
    ),
    (
        frame("error", payload={"code": "bad_request", "message": "no query"}),
        ErrorMessage(id=ID, payload=ErrorPayload(code="bad_request", message="no query")),
    ),
    (
        frame("error", "", {"code": "rate_limited", "message": "slow", "retry_after": 2.5}),
        ErrorMessage(
            id="", payload=ErrorPayload(code="rate_limited", message="slow", retry_after=2.5)
        ),
    ),
    (
        frame("challenge", payload={"challenge": "nonce-123"}),
        ChallengeMessage(id=ID, payload=ChallengePayload(challenge="nonce-123")),
    ),
    (
        frame("auth_ok", payload={"pubkey": "ab" * 32}),
        AuthOkMessage(id=ID, payload=AuthOkPayload(pubkey="ab" * 32)),
    ),
    (
        frame("response_chunk", payload={"delta": "Hel", "index": 0}),
        ResponseChunkMessage(id=ID, payload=ResponseChunkPayload(delta="Hel", index=0)),
    ),
    (
        # The body is kept as the exact bytes it was signed as (spaces included).
        frame("signed", "", {"conn": "ab" * 16, "seq": 3, "body": {"a": 1}, "sig": "cd" * 64}),
        SignedMessage(
            id="",
            payload=SignedPayload(
                conn="ab" * 16, seq=3, body=msgspec.Raw(b'{"a": 1}'), sig="cd" * 64
            ),
        ),
    ),
    (
        frame("sealed", "", {"conn": "ab" * 16, "seq": 0, "box": "AAAA", "sig": "cd" * 64}),
        SealedMessage(
            id="", payload=SealedPayload(conn="ab" * 16, seq=0, box="AAAA", sig="cd" * 64)
        ),
    ),
]

ALL_MESSAGES: list[Message] = [
    *(message for _, message in KNOWN_CASES),
    UnknownMessage(type="presence", id=ID, payload={"who": ["a", "b"], "n": 2}),
    UnknownMessage(type="ping", id="p1", payload=None),
]


# -- decode: known types ------------------------------------------------------------


@pytest.mark.parametrize(("wire", "expected"), KNOWN_CASES)
def test_decode_known_type_gives_its_struct_with_its_fields(wire: bytes, expected: Message) -> None:
    message = codec.decode(wire)

    assert type(message) is type(expected)
    assert message == expected


def test_every_known_type_is_covered_by_the_decode_cases() -> None:
    assert {type(m) for _, m in KNOWN_CASES} == set(KNOWN_CLASSES)
    assert set(KNOWN_TYPES) == {
        "ask",
        "auth",
        "response",
        "error",
        "challenge",
        "auth_ok",
        "response_chunk",
        "signed",
        "sealed",
    }


def test_decode_match_dispatch_reads_the_answer() -> None:
    message = codec.decode(frame("response", payload={"answer": "hi"}))

    match message:
        case ResponseMessage(payload=AskResponse(answer=answer)):
            assert answer == "hi"
        case _:
            pytest.fail(f"not a response: {message!r}")


@pytest.mark.parametrize(("wire", "expected"), KNOWN_CASES[:3])
def test_decode_accepts_str_and_bytes_alike(wire: bytes, expected: Message) -> None:
    assert codec.decode(wire.decode()) == codec.decode(wire) == expected


def test_decode_tolerates_unknown_fields_in_envelope_and_payload() -> None:
    wire = frame(
        "response",
        payload={"answer": "42", "confidence": 0.9, "usage": None},
        trace="abc",
        version=2,
    )

    assert codec.decode(wire) == ResponseMessage(id=ID, payload=AskResponse(answer="42"))


def test_decode_accepts_fields_in_any_order_and_surrounding_whitespace() -> None:
    wire = b' \n{"payload": {"query": "q"}, "id": "a1", "type": "ask"}\n '

    assert codec.decode(wire) == AskMessage(id="a1", payload=AskRequest(query="q"))


def test_decode_accepts_an_id_of_exactly_the_maximum_length() -> None:
    long_id = "a" * MAX_ID_LENGTH

    assert codec.decode(frame("ask", long_id, {"query": "q"})).id == long_id


# -- decode: unknown types ------------------------------------------------------------


@pytest.mark.parametrize(
    "payload", [{"who": "me", "nested": {"x": [1, 2.5, None]}}, [1, "two"], "text", 7, None]
)
def test_decode_unknown_type_gives_unknown_message_with_untyped_payload(payload: Any) -> None:
    message = codec.decode(frame("presence", payload=payload))

    assert type(message) is UnknownMessage
    assert message == UnknownMessage(type="presence", id=ID, payload=payload)


def test_decode_unknown_type_tolerates_extra_envelope_fields() -> None:
    message = codec.decode(frame("presence", payload=1, extra="x"))

    assert message == UnknownMessage(type="presence", id=ID, payload=1)


def test_decode_unknown_type_with_payload_shaped_like_a_known_one_stays_unknown() -> None:
    message = codec.decode(frame("Response", payload={"answer": "42"}))

    assert message == UnknownMessage(type="Response", id=ID, payload={"answer": "42"})


# -- decode: malformed frames ----------------------------------------------------------


MALFORMED_ENVELOPES: list[bytes | str] = [
    b"",
    b"not json",
    b'{"type": "ask", "id": "a", "payload": {"query": "q"}',  # truncated
    b'{"type": "ask", "id": "a", "payload": {"query": "q"}}{}',  # trailing data
    b"\xff\xfe\x00",  # not UTF-8
    b"[]",
    b'["ask", "a", {"query": "q"}]',
    b'"ask"',
    b"42",
    b"null",
    b"{}",
    b'{"id": "a", "payload": {}}',  # no type
    b'{"type": "presence", "payload": {}}',  # no id
    b'{"type": "ask", "payload": {"query": "q"}}',  # known type, no id
    b'{"type": "", "id": "a", "payload": {}}',  # empty type
    b'{"type": 7, "id": "a", "payload": {}}',  # type not a string
    b'{"type": null, "id": "a", "payload": {}}',
    b'{"type": "ask", "id": 7, "payload": {"query": "q"}}',  # id not a string
    b'{"type": "presence", "id": null, "payload": {}}',
    frame("ask", "a" * (MAX_ID_LENGTH + 1), {"query": "q"}),  # id too long
    frame("presence", "a" * (MAX_ID_LENGTH + 1), {}),  # id too long, unknown type
    "not json either",
]


@pytest.mark.parametrize("wire", MALFORMED_ENVELOPES)
def test_decode_malformed_envelope_raises_protocol_error_with_frame_excerpt(
    wire: bytes | str,
) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(wire)

    text = wire.decode("utf-8", "replace") if isinstance(wire, bytes) else wire
    assert info.value.frame == text
    assert info.value.message_id is None
    assert "envelope" in str(info.value)


WRONG_PAYLOADS: list[tuple[str, Any]] = [
    ("ask", None),  # known type: the payload is required
    ("ask", "just a string"),
    ("ask", {}),  # no query
    ("ask", {"query": ""}),  # empty query
    ("ask", {"query": 7}),
    ("ask", {"query": "q", "team_id": 7}),
    ("auth", {"pubkey": "ab", "signature": "cd"}),  # no challenge
    ("response", {"answer": 42}),  # the answer is a number
    ("response", {"answer": "a", "usage": {"prompt_tokens": 1}}),  # usage incomplete
    ("response", {"answer": "a", "usage": {"prompt_tokens": "1", "completion_tokens": 1,
                                           "total_tokens": 2}}),
    ("error", {"code": "internal"}),  # no message
    ("error", {"code": "rate_limited", "message": "m", "retry_after": "soon"}),
    ("challenge", {"challenge": ["x"]}),
    ("auth_ok", {}),
    ("response_chunk", {"delta": "x", "index": "0"}),
    ("response_chunk", {"delta": "x", "index": 1.5}),
]  # fmt: skip


@pytest.mark.parametrize(("type_", "payload"), WRONG_PAYLOADS)
def test_decode_known_type_with_wrong_payload_raises_with_its_id(type_: str, payload: Any) -> None:
    wire = frame(type_, "req-1", payload)

    with pytest.raises(ProtocolError) as info:
        codec.decode(wire)

    assert info.value.message_id == "req-1"
    assert info.value.frame == wire.decode()
    assert repr(type_) in str(info.value)


def test_protocol_error_says_where_the_payload_is_wrong() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.payload\.answer"):
        codec.decode(frame("response", payload={"answer": 42}))


def test_protocol_error_for_a_huge_frame_keeps_a_bounded_excerpt() -> None:
    huge = '{"type": "ask", "id": "a", "payload": {"query": "' + "x" * 1_000_000  # unclosed

    with pytest.raises(ProtocolError) as info:
        codec.decode(huge)

    excerpt = info.value.frame
    marker = f"... ({len(huge)} characters)"
    assert excerpt == huge[:FRAME_EXCERPT] + marker
    assert len(excerpt) <= FRAME_EXCERPT + len(marker)
    assert len(str(info.value)) < 2 * FRAME_EXCERPT + 200


def test_protocol_error_for_a_huge_bytes_frame_is_bounded_too() -> None:
    huge = b"\x00" + "é".encode() * 500_000

    with pytest.raises(ProtocolError) as info:
        codec.decode(huge)

    assert info.value.frame.startswith("\x00é")
    assert len(info.value.frame) <= FRAME_EXCERPT + 40


def test_protocol_error_for_a_frame_at_the_limit_is_not_truncated() -> None:
    wire = "x" * FRAME_EXCERPT

    with pytest.raises(ProtocolError) as info:
        codec.decode(wire)

    assert info.value.frame == wire


def test_decode_str_with_lone_surrogate_raises_protocol_error() -> None:
    # Regression: msgspec's UnicodeEncodeError used to escape.
    with pytest.raises(ProtocolError):
        codec.decode('{"type": "ask", "id": "\ud800", "payload": {"query": "q"}}')


def test_decode_unknown_type_without_payload_is_malformed() -> None:
    # Regression: docs/protocol.md requires all three fields, whatever the type.
    with pytest.raises(ProtocolError):
        codec.decode(b'{"type": "presence", "id": "a"}')


@pytest.mark.parametrize(
    ("type_", "payload"),
    [
        ("ask", {"query": "q"}),
        ("response", {"answer": "a"}),
        ("response_chunk", {"delta": "a", "index": 0}),
        ("presence", {}),
    ],
)
def test_decode_empty_id_is_malformed_except_on_error(type_: str, payload: Any) -> None:
    # Regression: docs/protocol.md allows "" only on an error about the whole connection.
    with pytest.raises(ProtocolError):
        codec.decode(frame(type_, "", payload))


def test_decode_empty_id_is_allowed_on_a_connection_wide_error() -> None:
    message = codec.decode(frame("error", "", {"code": "internal", "message": "m"}))

    assert message == ErrorMessage(id="", payload=ErrorPayload(code="internal", message="m"))
