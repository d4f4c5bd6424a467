"""docs/protocol.md against the code: close codes, HTTP statuses, limits and the optional
envelope fields (the page and the code are read as test_protocol_doc.py says)."""

from __future__ import annotations

import re

import msgspec

from nexus_reactive import WebSocketConfig, messages
from nexus_reactive.core import policy
from nexus_reactive.errors import AuthenticationError
from nexus_reactive.server.keyauth import new_challenge
from nexus_reactive.signing import PUBLIC_KEY_HEX_LENGTH, SIGNATURE_HEX_LENGTH

from .protocol_doc_reader import (
    FIELD_HEADER,
    PAGE,
    Section,
    _backticked,
    _close_constants,
    _mentions,
    _missing,
    _numbers,
    _only_table,
    close_codes_in_code,
    http_statuses_in_code,
    page_fixture,  # noqa: F401 (the page, parsed)
)
from .test_protocol_doc import _create_app_default, _json_type, _strip_none

# --- close codes ---------------------------------------------------------------------


def _close_rows(page: Section) -> dict[int, dict[str, str]]:
    rows = {}
    for row in _only_table(page.child("Close codes")):
        codes = [int(n) for n in re.findall(r"\d{4}", row["code"])]
        assert codes, f"docs/protocol.md: close code row {row['code']!r} has no code"
        for code in codes:
            rows[code] = row
    return rows


def test_every_close_code_is_documented_and_every_documented_code_exists(
    page: Section,
) -> None:
    documented = set(_close_rows(page))
    in_code = close_codes_in_code()
    for name in ("CLOSE_AUTH_FAILED", "CLOSE_FORBIDDEN", "CLOSE_RATE_LIMITED"):
        assert name in _close_constants(), f"the scan no longer finds {name}: update this test"
    missing = set(in_code) - documented
    assert not missing, "close codes not in the close code table of docs/protocol.md: " + ", ".join(
        f"{code} ({in_code[code]})" for code in sorted(missing)
    )
    assert not documented - set(in_code), _missing(
        "close codes",
        documented - set(in_code),
        "are documented but the code never sends, names or judges them",
    )


def test_the_client_acts_on_each_close_code_as_documented(page: Section) -> None:
    for code, row in _close_rows(page).items():
        error = policy.close_error(code)
        fatal = row["client action"].startswith("fatal")
        assert error.retryable is not fatal, (
            f"docs/protocol.md says close {code}: {row['client action']!r}; the client's "
            f"policy has retryable={error.retryable}"
        )
        assert isinstance(error, AuthenticationError) is fatal
    # 4429's wait comes in the close reason, in either documented form.
    assert policy.close_retry_after("retry_after=2.5") == 2.5
    assert policy.close_retry_after("2.5") == 2.5


def test_close_codes_named_anywhere_are_in_the_table(page: Section) -> None:
    text = PAGE.read_text()
    named = {int(n) for n in re.findall(r"(?<![\w,.])([14]\d{3})(?![\d,.])", text)}
    named |= {int(n) for n in re.findall(r"\b([14]\d{3})\b", policy.__doc__ or "")}
    assert not named - set(_close_rows(page)), _missing(
        "close codes",
        named - set(_close_rows(page)),
        "are named (in docs/protocol.md or policy.py) but not in the close code table",
    )


# --- HTTP statuses -------------------------------------------------------------------


def _status_rows(page: Section) -> dict[str, dict[str, str]]:
    return {
        row["status"]: row
        for row in _only_table(page.child("The upgrade request").child("HTTP statuses"))
    }


def _status_documented(status: int, rows: dict[str, dict[str, str]]) -> bool:
    return str(status) in rows or (status >= 500 and "5xx" in rows)


def test_every_http_status_is_documented_and_every_documented_status_is_used(
    page: Section,
) -> None:
    rows = _status_rows(page)
    server, client = http_statuses_in_code()
    assert 401 in server and 401 in client, "the scan of HTTP statuses needs updating"
    for who, statuses in (
        ("the server answers with", server),
        ("the client's policy names", client),
    ):
        missing = {s for s in statuses if not _status_documented(s, rows)}
        assert not missing, _missing("HTTP statuses", missing, f"{who} are not in docs/protocol.md")
    numeric = {int(s) for s in rows if s.isdigit()}
    assert not numeric - server - client, _missing(
        "HTTP statuses", numeric - server - client, "are documented but the code never uses them"
    )
    text = PAGE.read_text() + (policy.__doc__ or "")
    named = {int(n) for n in re.findall(r"HTTP (\d{3})", text)}
    assert not {s for s in named if not _status_documented(s, rows)}, (
        f"HTTP statuses named but not in the status table: {sorted(named)}"
    )


def test_the_client_acts_on_each_http_status_as_documented(page: Section) -> None:
    examples = {"5xx": [500, 502, 503, 599], "other 4xx": [400, 404, 405, 418]}
    for status, row in _status_rows(page).items():
        fatal = row["client action"].startswith("fatal")
        for code in examples.get(status, [int(status)] if status.isdigit() else []):
            if status == "other 4xx" and str(code) in _status_rows(page):
                continue
            error = policy.http_error(code)
            assert error.retryable is not fatal, (
                f"docs/protocol.md says HTTP {code}: {row['client action']!r}; the client's "
                f"policy has retryable={error.retryable}"
            )
    assert policy.header_retry_after("3") == 3.0


# --- limits --------------------------------------------------------------------------


def _limits_in_code() -> dict[str, float]:
    client = WebSocketConfig()
    assert client.max_message_size == _create_app_default("max_message_size"), (
        "client and server default max_message_size differ: docs/protocol.md states one value"
    )
    assert client.auth_timeout == _create_app_default("auth_timeout"), (
        "client and server default auth_timeout differ: docs/protocol.md states one value"
    )
    assert client.heartbeat is not None
    return {
        "id length": messages.MAX_ID_LENGTH,
        "message size": client.max_message_size,
        "query length": _create_app_default("max_query_length"),  # type: ignore[dict-item]
        "team_id length": _create_app_default("max_team_id_length"),  # type: ignore[dict-item]
        "public key": PUBLIC_KEY_HEX_LENGTH,
        "signature": SIGNATURE_HEX_LENGTH,
        "challenge": len(new_challenge().payload.challenge),
        "remembered replies": _create_app_default("dedupe_size"),  # type: ignore[dict-item]
        "remembered for": _create_app_default("dedupe_ttl"),  # type: ignore[dict-item]
        "auth timeout": client.auth_timeout,
        "abuse threshold": _create_app_default("abuse_threshold"),  # type: ignore[dict-item]
        "client heartbeat": client.heartbeat,
    }


def test_the_limits_are_the_codes_numbers(page: Section) -> None:
    rows = {row["limit"]: row for row in _only_table(page.child("Limits"))}
    expected = _limits_in_code()
    assert not set(expected) - set(rows), _missing(
        "limits", set(expected) - set(rows), "are not in the limits table of docs/protocol.md"
    )
    assert not set(rows) - set(expected), _missing(
        "limits",
        set(rows) - set(expected),
        "are documented but this test does not know their constants: add them",
    )
    for name, value in expected.items():
        numbers = _numbers(rows[name]["value"])
        assert numbers and numbers[0] == value, (
            f"docs/protocol.md: limit {name!r} is {rows[name]['value']!r}; the code has {value:g}"
        )


# --- optional envelope fields (trace context) ---------------------------------------------

_ENVELOPE = {"type", "id", "payload"}


def _envelope_extras() -> dict[str, dict[str, msgspec.inspect.Field]]:
    """Envelope fields beyond type, id and payload, by field name: the classes having each."""
    extras: dict[str, dict[str, msgspec.inspect.Field]] = {}
    for cls in messages.KNOWN_CLASSES:
        info = msgspec.inspect.type_info(cls)
        assert isinstance(info, msgspec.inspect.StructType)
        for f in info.fields:
            if f.encode_name not in _ENVELOPE:
                extras.setdefault(f.encode_name, {})[cls.type] = f
    return extras


def test_optional_envelope_fields_are_documented_both_ways(page: Section) -> None:
    section = page.child("Trace context (ext)")
    rows = {_backticked(row["field"]): row for row in _only_table(section, FIELD_HEADER)}
    extras = _envelope_extras()
    assert set(extras) == set(rows), (
        f"docs/protocol.md, Trace context: fields {sorted(rows)}; the envelopes in "
        f"messages.py have {sorted(extras)} beyond type, id and payload"
    )
    for name, by_type in extras.items():
        row = rows[name]
        assert set(by_type) == {"ask"}, f"`{name}` is on {sorted(by_type)}; the page says ask"
        info = by_type["ask"]
        kind = _strip_none(info.type)
        assert row["type"] == _json_type(kind)
        assert row["required"] == ("yes" if info.required else "no")
        assert isinstance(kind, msgspec.inspect.StrType) and kind.max_length is not None
        assert _mentions(row["limits"], kind.max_length), (
            f"`{name}` is at most {kind.max_length} characters in the code; the page says "
            f"{row['limits']!r}"
        )
    # The example frame on the page is a valid ask carrying a traceparent.
    (example,) = re.findall(r"```json\n(.*?)\n```", section.text, re.S)
    decoded = msgspec.json.decode(example.encode(), type=messages.AskMessage)
    assert decoded.traceparent is not None and len(decoded.traceparent) == 55
