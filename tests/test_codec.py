"""The codec and the message structs: frames to typed messages and back, pure and fast."""

from __future__ import annotations

import concurrent.futures
import json
import types
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    new_id,
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


# -- the property: decode never fails in any other way ------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(sorted(KNOWN_TYPES)) | st.text(max_size=8) | json_values,
        "id": st.text(max_size=MAX_ID_LENGTH + 2) | json_values,
        "payload": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                k: json_values
                for k in ("query", "answer", "code", "message", "delta", "index", "usage")
            },
        ),
    },
)


def decodes_or_protocol_error(wire: bytes | str) -> None:
    error: ProtocolError | None = None
    result: object = None
    try:
        result = codec.decode(wire)
    except ProtocolError as exc:
        error = exc
    if error is None:
        assert isinstance(result, (*KNOWN_CLASSES, UnknownMessage))
    else:
        assert isinstance(error.frame, str)
        assert len(error.frame) <= FRAME_EXCERPT + 40


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_decode_of_arbitrary_bytes_returns_a_message_or_raises_protocol_error(
    wire: bytes,
) -> None:
    decodes_or_protocol_error(wire)


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_decode_of_arbitrary_text_returns_a_message_or_raises_protocol_error(wire: str) -> None:
    decodes_or_protocol_error(wire)


@given(envelopes)
@settings(max_examples=150, deadline=None)
def test_decode_of_arbitrary_json_objects_returns_a_message_or_raises_protocol_error(
    envelope: dict[str, Any],
) -> None:
    decodes_or_protocol_error(json.dumps(envelope))


@given(
    st.text(min_size=1, max_size=50),
    st.text(min_size=1, max_size=MAX_ID_LENGTH),
    st.none() | st.text(max_size=10),
)
@settings(max_examples=200, deadline=None)
def test_any_valid_ask_round_trips(query: str, id_: str, team_id: str | None) -> None:
    message = AskMessage(id=id_, payload=AskRequest(query=query, team_id=team_id))

    assert codec.decode(codec.encode(message)) == message


# -- encode ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: f"{type(m).__name__}")
def test_encode_then_decode_round_trips(message: Message) -> None:
    encoded = codec.encode(message)

    assert isinstance(encoded, bytes)
    assert codec.decode(encoded) == message


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: f"{type(m).__name__}")
def test_encode_writes_the_envelope_with_type_id_and_payload(message: Message) -> None:
    envelope = json.loads(codec.encode(message))

    assert set(envelope) == {"type", "id", "payload"}
    assert envelope["type"] == message.type
    assert envelope["id"] == message.id


def test_encode_ask_is_exactly_the_protocol_envelope() -> None:
    encoded = codec.encode(AskMessage(id="a1", payload=AskRequest(query="hi")))

    assert json.loads(encoded) == {"type": "ask", "id": "a1", "payload": {"query": "hi"}}


@pytest.mark.parametrize(
    ("message", "absent"),
    [
        (AskMessage(id="a", payload=AskRequest(query="q")), "team_id"),
        (ResponseMessage(id="a", payload=AskResponse(answer="x")), "context"),
        (ResponseMessage(id="a", payload=AskResponse(answer="x")), "usage"),
        (ErrorMessage(id="a", payload=ErrorPayload(code="c", message="m")), "retry_after"),
    ],
)
def test_encode_omits_optional_fields_left_unset(message: Message, absent: str) -> None:
    encoded = codec.encode(message)

    assert absent.encode() not in encoded
    assert b"null" not in encoded


def test_encode_keeps_optional_fields_that_are_set() -> None:
    message = ErrorMessage(id="", payload=ErrorPayload(code="c", message="m", retry_after=1.5))

    assert json.loads(codec.encode(message))["payload"]["retry_after"] == 1.5


def test_encode_writes_non_ascii_text_as_utf8() -> None:
    encoded = codec.encode(AskMessage(id="a", payload=AskRequest(query="héllo ✓")))

    assert json.loads(encoded.decode("utf-8"))["payload"]["query"] == "héllo ✓"


def test_new_id_is_uuid4_hex_and_fresh() -> None:
    ids = {new_id() for _ in range(1000)}  # several refills of the pool

    assert len(ids) == 1000
    for id_ in ids:
        assert len(id_) == 32
        assert uuid.UUID(hex=id_).version == 4
        assert uuid.UUID(hex=id_).variant == uuid.RFC_4122
        assert uuid.UUID(hex=id_).hex == id_


def test_new_id_from_many_threads_never_repeats() -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(lambda _: [new_id() for _ in range(2000)], range(8)))
    ids = [id_ for batch in batches for id_ in batch]
    assert len(set(ids)) == len(ids) == 16_000


# -- to_message -------------------------------------------------------------------------


def test_to_message_types_a_valid_mapping() -> None:
    message = codec.to_message({"type": "ask", "id": "a1", "payload": {"query": "q"}})

    assert message == AskMessage(id="a1", payload=AskRequest(query="q"))


def test_to_message_types_an_unknown_type_mapping() -> None:
    message = codec.to_message({"type": "note", "id": "n1", "payload": [1, 2]})

    assert message == UnknownMessage(type="note", id="n1", payload=[1, 2])


@pytest.mark.parametrize("message", ALL_MESSAGES[:3], ids=lambda m: type(m).__name__)
def test_to_message_returns_a_valid_struct_unchanged(message: Message) -> None:
    result = codec.to_message(message)

    assert type(result) is type(message)
    assert result == message


@pytest.mark.parametrize(
    "mapping",
    [
        {},
        {"type": "ask", "id": "a"},  # known type, no payload
        {"type": "ask", "id": "a", "payload": {"query": ""}},
        {"type": "ask", "id": "a", "payload": {"text": "q"}},
        {"type": "ask", "id": "a" * (MAX_ID_LENGTH + 1), "payload": {"query": "q"}},
        {"type": "", "id": "a", "payload": {}},
        {"id": "a", "payload": {}},
        {1: 2},
    ],
)
def test_to_message_rejects_an_invalid_mapping(mapping: dict[Any, Any]) -> None:
    with pytest.raises(ProtocolError):
        codec.to_message(mapping)


@pytest.mark.parametrize("junk", ["ask", b"{}", 42, None, ["ask", "a", {}], object()])
def test_to_message_rejects_things_that_are_not_messages(junk: Any) -> None:
    with pytest.raises(ProtocolError, match="message struct"):
        codec.to_message(junk)


@pytest.mark.parametrize(
    "mapping",
    [
        {"type": "ask", "id": "a", "payload": {"query": object()}},
        types.MappingProxyType({"type": "ask", "id": "a", "payload": {"query": "q"}}),
    ],
    ids=["unencodable-value", "mappingproxy"],
)
def test_to_message_reports_an_unencodable_mapping_as_protocol_error(mapping: Any) -> None:
    # Regression: msgspec raises TypeError (not EncodeError) for these.
    with pytest.raises(ProtocolError):
        codec.to_message(mapping)


@pytest.mark.parametrize(
    "message",
    [
        AskMessage(id="a", payload=AskRequest(query="")),
        AskMessage(id="a" * 200, payload=AskRequest(query="q")),
        AskMessage(id="", payload=AskRequest(query="q")),
        UnknownMessage(type="", id="a", payload=None),
    ],
    ids=["empty-query", "long-id", "empty-id", "empty-type"],
)
def test_to_message_validates_a_struct_too(message: Message) -> None:
    # Regression: structs are not validated on construction, so to_message must.
    with pytest.raises(ProtocolError):
        codec.to_message(message)


# -- redact: frames for logs ------------------------------------------------------------

SIGNATURE = "5e" * 64


def test_redact_hides_the_signature_of_an_auth_frame() -> None:
    wire = codec.encode(
        AuthMessage(id="c1", payload=AuthPayload(pubkey="ab", signature=SIGNATURE, challenge="z"))
    )

    text = codec.redact(wire)

    assert SIGNATURE not in text
    assert json.loads(text)["payload"] == {
        "pubkey": "ab",
        "signature": "<redacted>",
        "challenge": "z",
    }


@pytest.mark.parametrize(
    "wire",
    [
        b'{"type": "auth", "id": "c1", "payload": {"signature": "' + SIGNATURE.encode(),
        frame("presence", payload={"signature": SIGNATURE}),
    ],
    ids=["truncated-auth", "unknown-type"],
)
def test_redact_hides_a_frame_it_cannot_parse_that_has_a_signature(wire: bytes) -> None:
    assert SIGNATURE not in codec.redact(wire)


def test_redact_leaves_other_frames_alone() -> None:
    wire = frame("ask", payload={"query": "héllo"})

    assert codec.redact(wire) == wire.decode()
    assert codec.redact(wire.decode()) == wire.decode()


def test_redact_cuts_long_frames() -> None:
    text = codec.redact("x" * 5000, limit=100)

    assert text == "x" * 100 + "... (5000 characters)"
