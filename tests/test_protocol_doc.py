"""docs/protocol.md is the wire contract: hold the code to it, and it to the code.

Every message type, payload field, error code, close code, HTTP status and limit
the code implements is documented there, with the code's types and numbers; and
nothing is documented that the code does not implement. The page is parsed (its
headings and tables), the code is read from its classes, constants and, for the
codes it sends or compares, its source (AST), so a new close code, error code or
status in the code fails here until the page says what it means.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from aiohttp import WSCloseCode

from nexus_reactive import WebSocketConfig, messages
from nexus_reactive.core import policy
from nexus_reactive.errors import AuthenticationError
from nexus_reactive.server import create_app
from nexus_reactive.server.keyauth import new_challenge
from nexus_reactive.signing import PUBLIC_KEY_HEX_LENGTH, SIGNATURE_HEX_LENGTH

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "protocol.md"
PACKAGE = ROOT / "nexus_reactive"
SERVER = PACKAGE / "server"

FIELD_HEADER = ["field", "type", "required", "limits"]


# --- the page ------------------------------------------------------------------------


@dataclass
class Section:
    level: int
    title: str
    lines: list[str] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def tables(self) -> list[list[dict[str, str]]]:
        """This section's own tables (not its subsections'), as rows keyed by header."""
        tables: list[list[dict[str, str]]] = []
        block: list[str] = []
        for line in [*self.lines, ""]:
            if line.startswith("|"):
                block.append(line)
            elif block:
                tables.append(_table(block))
                block = []
        return tables

    def child(self, title: str) -> Section:
        for section in self.children:
            if section.title == title:
                return section
        raise AssertionError(
            f"docs/protocol.md has no section {title!r} under {self.title!r}; "
            f"its sections are {[s.title for s in self.children]}"
        )


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))]


def _table(block: list[str]) -> list[dict[str, str]]:
    header = _cells(block[0])
    assert len(block) >= 2 and set(block[1]) <= set("|-: "), f"not a table: {block[0]}"
    rows = []
    for line in block[2:]:
        cells = _cells(line)
        assert len(cells) == len(header), f"docs/protocol.md: row {line!r} has a wrong cell count"
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def _parse(text: str) -> Section:
    root = Section(0, "")
    stack = [root]
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"(#{1,6}) (.*)", line)
        if heading is None:
            stack[-1].lines.append(line)
            continue
        section = Section(len(heading.group(1)), heading.group(2).strip())
        while stack[-1].level >= section.level:
            stack.pop()
        stack[-1].children.append(section)
        stack.append(section)
    return root


@pytest.fixture(scope="module")
def page() -> Section:
    (title,) = _parse(PAGE.read_text()).children
    return title


def _only_table(section: Section, header: list[str] | None = None) -> list[dict[str, str]]:
    tables = section.tables()
    assert tables, f"docs/protocol.md: section {section.title!r} has no table"
    if header is not None:
        assert list(tables[0][0]) == header, (
            f"docs/protocol.md: the table of {section.title!r} must have the columns {header}"
        )
    return tables[0]


def _backticked(cell: str) -> str:
    found = re.fullmatch(r"`([^`]+)`", cell)
    assert found, f"docs/protocol.md: expected a `name` in backticks, got {cell!r}"
    return found.group(1)


def _numbers(text: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


def _mentions(text: str, number: int) -> bool:
    plain = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.search(rf"(?<![\d.]){number}(?![\d.])", plain) is not None


def _missing(kind: str, names: set[str] | set[int], where: str) -> str:
    listed = ", ".join(str(n) for n in sorted(names, key=str))
    return f"{kind} {listed} {where}"


# --- the code, read from its source --------------------------------------------------


def _modules(folder: Path) -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), str(path))


def _close_constants() -> dict[str, int]:
    """Every module-level ``CLOSE_... = <int>`` in the package."""
    found: dict[str, int] = {}
    for _, tree in _modules(PACKAGE):
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id.startswith("CLOSE_")
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, int)
            ):
                found[node.targets[0].id] = node.value.value
    return found


def _close_code_of(node: ast.expr, constants: dict[str, int]) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "WSCloseCode"
    ):
        return int(WSCloseCode[node.attr])
    return None


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def close_codes_in_code() -> dict[int, str]:
    """The close codes the code sends, names or judges, and where each comes from."""
    codes: dict[int, str] = {}
    for code in (*policy._CLOSE_MEANING, *policy.FATAL_CLOSE_CODES):
        codes.setdefault(code, "nexus_reactive/core/policy.py")
    constants = _close_constants()
    for name, value in constants.items():
        codes.setdefault(value, name)
    for path, tree in _modules(PACKAGE):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _call_name(node) in (
                "close",
                "_close",
                "close_error",
            ):
                arguments = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "code")]
                for argument in arguments:
                    found = _close_code_of(argument, constants)
                    if found is not None:
                        codes.setdefault(found, where)
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "close":
                # A close(code=1000) default is the code the client closes with.
                positional = [*node.args.posonlyargs, *node.args.args]
                defaults = dict(zip(positional[::-1], node.args.defaults[::-1], strict=False))
                for parameter, default in defaults.items():
                    found = _close_code_of(default, constants)
                    if parameter.arg == "code" and found is not None:
                        codes.setdefault(found, where)
    return codes


def error_codes_sent_by_server() -> set[str]:
    """``code`` strings the server writes: ``send_error(id, "code", ...)``,
    ``error_frame(...)`` (server/wire.py), and the ``"error"`` of an HTTP refusal's body."""
    codes: set[str] = set()
    for _, tree in _modules(SERVER):
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name in ("send_error", "error_frame") and len(node.args) >= 2:
                code = node.args[1]
                if isinstance(code, ast.Constant) and isinstance(code.value, str):
                    codes.add(code.value)
            if name == "json_response" and node.args and isinstance(node.args[0], ast.Dict):
                for key, value in zip(node.args[0].keys, node.args[0].values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "error"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, str)
                    ):
                        codes.add(value.value)
    return codes


def error_codes_judged_by_client() -> set[str]:
    """``code`` strings the client compares an error's code with, and the error codes
    the core names as module constants in ``core/meaning.py``."""
    codes: set[str] = set()
    for path, tree in _modules(PACKAGE):
        if SERVER in path.parents:
            continue
        if path.name == "meaning.py":
            for statement in tree.body:
                names = [t.id for t in getattr(statement, "targets", []) if isinstance(t, ast.Name)]
                if isinstance(statement, ast.Assign) and names != ["__all__"]:
                    codes |= {
                        node.value
                        for node in ast.walk(statement.value)
                        if isinstance(node, ast.Constant) and isinstance(node.value, str)
                    }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            left = node.left
            named = (isinstance(left, ast.Attribute) and left.attr == "code") or (
                isinstance(left, ast.Name) and left.id == "code"
            )
            if not named:
                continue
            for comparator in node.comparators:
                items = (
                    comparator.elts if isinstance(comparator, ast.Tuple | ast.Set) else [comparator]
                )
                codes |= {
                    item.value
                    for item in items
                    if isinstance(item, ast.Constant) and isinstance(item.value, str)
                }
    return codes


def http_statuses_in_code() -> tuple[set[int], set[int]]:
    """(statuses the server answers with, statuses the client's policy names)."""
    server: set[int] = set()
    for _, tree in _modules(SERVER):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for keyword in node.keywords:
                    value = keyword.value
                    if (
                        keyword.arg == "status"
                        and isinstance(value, ast.Constant)
                        and isinstance(value.value, int)
                    ):
                        server.add(value.value)
    client: set[int] = set()
    source = inspect.getsource(policy.http_error)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            client |= {
                c.value
                for c in node.comparators
                if isinstance(c, ast.Constant) and isinstance(c.value, int)
            }
    return server, client


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
