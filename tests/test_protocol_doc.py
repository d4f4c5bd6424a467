"""docs/protocol.md is the wire contract: hold the code to it, and it to the code.

Every message type, payload field, error code, close code, HTTP status and limit
the code implements is documented there, with the code's types and numbers; and
nothing is documented that the code does not implement. The page is parsed (its
headings and tables), the code is read from its classes, constants and, for the
codes it sends or compares, its source (AST), so a new close code, error code or
status in the code fails here until the page says what it means.

This file: message types, payloads and error codes; close codes, HTTP statuses, limits
and envelope fields: test_protocol_doc_codes.py; the readers: protocol_doc_reader.py.
"""

from __future__ import annotations

import inspect
import re
import typing

import msgspec

from nexus_reactive import messages
from nexus_reactive.server import create_app
from nexus_reactive.server.keyauth import new_challenge
from nexus_reactive.signing import PUBLIC_KEY_HEX_LENGTH, SIGNATURE_HEX_LENGTH

from .protocol_doc_reader import (
    FIELD_HEADER,
    PAGE,
    Section,
    _backticked,
    _mentions,
    _missing,
    _only_table,
    error_codes_judged_by_client,
    error_codes_sent_by_server,
    page_fixture,  # noqa: F401 (the page, parsed)
)

# --- message types and payloads ------------------------------------------------------


_HEADING = re.compile(r"`([a-z_]+)`(?: \(ext\))?")
_DIRECTIONS = ("Client to server", "Server to client", "Either way")


def _message_sections(page: Section) -> dict[str, Section]:
    found = {}
    for section in page.child("Messages").children:
        match = _HEADING.fullmatch(section.title)
        assert match, (
            f"docs/protocol.md: under Messages, heading {section.title!r} is not "
            "`type` or `type` (ext)"
        )
        found[match.group(1)] = section
    return found


def _classes_by_type() -> dict[str, type[msgspec.Struct]]:
    return {cls.type: cls for cls in messages.KNOWN_CLASSES}


def test_every_message_type_is_documented_and_every_documented_type_exists(
    page: Section,
) -> None:
    documented = set(_message_sections(page))
    in_code = set(messages.KNOWN_TYPES)
    # The union the decoder is built from, and the list of types, agree.
    union = {cls.type for cls in typing.get_args(messages.KnownMessage)}
    assert union == in_code, "messages.KnownMessage and messages.KNOWN_CLASSES differ"
    assert not in_code - documented, _missing(
        "message types", in_code - documented, "are in messages.py but not in docs/protocol.md"
    )
    assert not documented - in_code, _missing(
        "message types", documented - in_code, "are documented but messages.py has no such class"
    )


def test_each_message_type_says_its_direction_as_the_code_does(page: Section) -> None:
    classes = _classes_by_type()
    for name, section in _message_sections(page).items():
        text = section.text.strip()
        said = [d for d in _DIRECTIONS if text.startswith(d)]
        assert said, f"docs/protocol.md: `{name}` must start with one of {_DIRECTIONS}"
        doc = inspect.getdoc(classes[name]) or ""
        assert doc.startswith(said[0]), (
            f"docs/protocol.md says `{name}` goes {said[0].lower()}; "
            f"its class {classes[name].__name__} says: {doc.splitlines()[0]!r}"
        )


def _json_type(info: msgspec.inspect.Type) -> str:
    kinds = {
        msgspec.inspect.StrType: "string",
        msgspec.inspect.IntType: "integer",
        msgspec.inspect.FloatType: "number",
        msgspec.inspect.StructType: "object",
        msgspec.inspect.AnyType: "any JSON value",
        msgspec.inspect.RawType: "object",  # a message, embedded as it was signed
    }
    for kind, name in kinds.items():
        if isinstance(info, kind):
            return name
    raise AssertionError(f"no JSON name for {info!r}: teach this test")


def _strip_none(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    if isinstance(info, msgspec.inspect.UnionType):
        others = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        assert len(others) == 1, f"a union of several types: {info!r}"
        return others[0]
    return info


def _check_fields(
    where: str,
    rows: list[dict[str, str]],
    struct: msgspec.inspect.StructType,
    server_limits: dict[str, int],
) -> list[msgspec.inspect.StructType]:
    """Compare a field table with a struct; return the nested structs, in field order."""
    documented = {_backticked(row["field"]): row for row in rows}
    fields = {f.encode_name: f for f in struct.fields}
    assert not set(fields) - set(documented), _missing(
        f"{where}: fields", set(fields) - set(documented), "are in the code but not documented"
    )
    assert not set(documented) - set(fields), _missing(
        f"{where}: fields",
        set(documented) - set(fields),
        f"are documented but {struct.cls.__name__} has none",
    )
    nested = []
    for name, info in fields.items():
        row = documented[name]
        kind = _strip_none(info.type)
        assert row["type"] == _json_type(kind), (
            f"{where}: `{name}` is documented as {row['type']!r}; the code has {_json_type(kind)!r}"
        )
        required = "yes" if info.required else "no"
        assert row["required"] == required, (
            f"{where}: `{name}` required={row['required']!r} in the doc, {required!r} in the code"
        )
        limits = row["limits"]
        if isinstance(kind, msgspec.inspect.StrType):
            if kind.min_length == 1:
                assert "non-empty" in limits, f"{where}: `{name}` must be documented as non-empty"
            if kind.max_length is not None:
                assert _mentions(limits, kind.max_length), (
                    f"{where}: `{name}` is at most {kind.max_length} characters; its limits "
                    f"cell says {limits!r}"
                )
        if name in server_limits:
            assert _mentions(limits, server_limits[name]), (
                f"{where}: `{name}`'s limit is {server_limits[name]} in the code; its limits "
                f"cell says {limits!r}"
            )
        if isinstance(kind, msgspec.inspect.StructType):
            nested.append(kind)
    return nested


def _create_app_default(name: str) -> object:
    return inspect.signature(create_app).parameters[name].default


def _field_limits() -> dict[str, dict[str, int]]:
    """Limits the code puts on fields outside the structs (the server's, the keys')."""
    return {
        "ask": {
            "query": _create_app_default("max_query_length"),  # type: ignore[dict-item]
            "team_id": _create_app_default("max_team_id_length"),  # type: ignore[dict-item]
        },
        "auth": {"pubkey": PUBLIC_KEY_HEX_LENGTH, "signature": SIGNATURE_HEX_LENGTH},
        "auth_ok": {"pubkey": PUBLIC_KEY_HEX_LENGTH},
        "challenge": {"challenge": len(new_challenge().payload.challenge)},
    }


def test_every_payload_field_is_documented_with_its_type_and_limits(page: Section) -> None:
    classes = _classes_by_type()
    limits = _field_limits()
    for name, section in _message_sections(page).items():
        envelope = msgspec.inspect.type_info(classes[name])
        assert isinstance(envelope, msgspec.inspect.StructType)
        (payload,) = [f for f in envelope.fields if f.name == "payload"]
        struct = payload.type
        assert isinstance(struct, msgspec.inspect.StructType)
        tables = section.tables()
        assert tables and list(tables[0][0]) == FIELD_HEADER, (
            f"docs/protocol.md: `{name}` needs a payload table with the columns {FIELD_HEADER}"
        )
        nested = _check_fields(f"`{name}` payload", tables[0], struct, limits.get(name, {}))
        assert len(tables) == 1 + len(nested), (
            f"docs/protocol.md: `{name}` needs one field table for its payload and one "
            f"for each object in it ({[n.cls.__name__ for n in nested]})"
        )
        for inner, table in zip(nested, tables[1:], strict=True):
            _check_fields(f"`{name}` {inner.cls.__name__}", table, inner, {})


def test_the_envelope_is_documented(page: Section) -> None:
    rows = _only_table(page.child("The envelope"), FIELD_HEADER)
    documented = {_backticked(row["field"]): row for row in rows}
    in_code = {f.encode_name for f in msgspec.structs.fields(messages.UnknownMessage)}
    assert set(documented) == in_code, (
        f"docs/protocol.md: the envelope's fields are {sorted(documented)}; "
        f"the code's are {sorted(in_code)}"
    )
    assert _mentions(documented["id"]["limits"], messages.MAX_ID_LENGTH), (
        f"docs/protocol.md: an id is at most {messages.MAX_ID_LENGTH} characters in the code"
    )
    assert all(row["required"] == "yes" for row in rows)


# --- error codes ---------------------------------------------------------------------


def _documented_error_codes(page: Section) -> set[str]:
    rows = _only_table(page.child("Error codes"))
    return {_backticked(row["code"]) for row in rows}


def test_every_error_code_is_documented_and_every_documented_code_is_used(
    page: Section,
) -> None:
    documented = _documented_error_codes(page)
    sent = error_codes_sent_by_server()
    judged = error_codes_judged_by_client()
    assert {"bad_request", "internal"} <= sent, (
        f"found only {sorted(sent)} sent by the server: the scan of its source "
        "(send_error/error_frame calls) needs updating"
    )
    assert "rate_limited" in judged, (
        f"found only {sorted(judged)} judged by the client: the scan needs updating"
    )
    assert not sent - documented, _missing(
        "error codes", sent - documented, "are sent by the server but not in the error code table"
    )
    assert not judged - documented, _missing(
        "error codes",
        judged - documented,
        "are judged by the client but not in the error code table",
    )
    unused = documented - sent - judged
    assert not unused, _missing(
        "error codes",
        unused,
        "are documented but neither sent by the server nor judged by the client",
    )


def test_error_codes_named_in_the_prose_are_in_the_table(page: Section) -> None:
    named = set(re.findall(r"`error` `([a-z_]+)`", PAGE.read_text()))
    assert named, "the scan of `error` `code` mentions needs updating"
    assert not named - _documented_error_codes(page), _missing(
        "error codes",
        named - _documented_error_codes(page),
        "are named but not in the error code table",
    )
