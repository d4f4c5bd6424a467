"""The codec's properties, with Hypothesis: decode of any text, bytes or JSON object returns a
message or raises ProtocolError, never anything else; the ask path's frame template writes
exactly what encode writes."""

from __future__ import annotations

import json
from typing import Any

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
    UnknownMessage,
    new_id,
)

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


@given(st.text(min_size=1))
@settings(max_examples=300, deadline=None)
def test_the_ask_frame_template_is_exactly_what_encode_writes(query: str) -> None:
    # The ask path writes ASK_HEAD + query + ASK_MID + id + ASK_TAIL instead of encoding
    # two structs: the same bytes, whatever the query holds (quotes, escapes, emoji).
    ask_id = new_id()
    made = codec.ASK_HEAD + codec.encode_fast(query) + codec.ASK_MID
    made += ask_id.encode() + codec.ASK_TAIL
    assert made == codec.encode(AskMessage(id=ask_id, payload=AskRequest(query)))
