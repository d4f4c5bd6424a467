"""The codec's other direction and its helpers: encode, to_message and redact (frames for
logs), pure and fast."""

from __future__ import annotations

import concurrent.futures
import json
import types
import uuid
from typing import Any

import pytest

from nexus_reactive import codec
from nexus_reactive.errors import ProtocolError
from nexus_reactive.messages import (
    MAX_ID_LENGTH,
    AskMessage,
    AskRequest,
    AskResponse,
    AuthMessage,
    AuthPayload,
    ErrorMessage,
    ErrorPayload,
    Message,
    ResponseMessage,
    UnknownMessage,
    new_id,
)

from .test_codec import ALL_MESSAGES, frame

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
