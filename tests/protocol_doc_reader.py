"""How the protocol-doc tests read docs/protocol.md (its headings and tables) and the code
(its classes, constants and source): the ``page`` fixture and the readers."""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import WSCloseCode

from nexus_reactive.core import policy

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


@pytest.fixture(scope="module", name="page")
def page_fixture() -> Section:
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
