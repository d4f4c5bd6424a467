"""How tests/test_docs_code.py reads README.md and docs/*.md (Sybil): the pages, their
blocks and what the tests do with each, and the checks of shell blocks; what the tests
promise is described there. Running the pages: docs_runs.py."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from sybil import Document, Example, Lexeme, Sybil
from sybil.parsers.markdown import CodeBlockParser

from nexus_reactive.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md"))]
#: Pages whose Python blocks are the cells of one notebook.
NOTEBOOK_PAGES = frozenset({"docs/notebooks.md"})
#: The URL the pages show, and the port in it that the tests replace.
DOCS_URL = "ws://localhost:8000"
#: Seconds one block (or notebook cell) may take, on a loaded 2-core machine.
BLOCK_TIMEOUT = 60.0
#: Seconds for the server's startup line, and for a page's threads to end.
STARTUP_TIMEOUT = 30.0
#: The files the pages include, and the test that runs each.
INCLUDED = {
    "examples/quickstart.py": "tests/test_docs_code.py::test_make_demo_runs_the_quickstart",
    "examples/tk_chat.py": "tests/test_tk_example.py (under Xvfb)",
    "examples/qt_chat.py": "tests/test_qt_example.py (under Xvfb)",
    "examples/test_my_app.py": (
        "tests/test_testing_kit.py::test_the_docs_example_passes_as_a_users_copy"
    ),
    "examples/solara_chat.py": "tests/test_solara_browser.py (headless Chromium)",
}
#: Fence languages that are Python but would not be run: write ```python.
PYTHON_ALIASES = frozenset({"py", "python3", "py3", "pycon", "ipython", "ipython3", "Python"})

_MARKER = re.compile(r"<!--\s*fragment:((?:(?!-->).)*)-->", re.DOTALL)
_MARKER_LAST = re.compile(_MARKER.pattern + r"\s*\Z", re.DOTALL)
_INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
_FENCE = re.compile(r"^[ \t]*(?:`{3,}|~{3,})[ \t]*([^\s`{]+)", re.MULTILINE)
_MAKE_TARGET = re.compile(r"^([A-Za-z0-9_.-]+):", re.MULTILINE)


# -- the pages, parsed ----------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A fenced block of a page, and what the tests do with it."""

    kind: Literal["python", "fragment", "include", "shell"]
    #: The block's text, which knows its line in the page.
    source: Lexeme
    #: The fragment's reason, or the included file.
    note: str = ""


def _unbound(example: Example) -> None:
    raise RuntimeError(
        f"{example.path}, line {example.line}: a page's blocks run through the `pages` "
        "fixture of tests/test_docs_code.py, which starts the server they talk to"
    )


class PageParser:
    """The Sybil parser of a page: its Python blocks (programs, fragments or
    includes) and its shell blocks."""

    def __init__(self) -> None:
        self.python = CodeBlockParser("python", _unbound)
        self.shells = [CodeBlockParser(lang, _unbound) for lang in ("sh", "bash", "shell")]

    def __call__(self, document: Document) -> Iterator[Any]:
        text = document.text
        for match in _FENCE.finditer(text):
            if match.group(1) in PYTHON_ALIASES:
                raise ValueError(
                    f"{document.path}, {document.line_column(match.start())}: a ```"
                    f"{match.group(1)} block would not be tested: fence Python as ```python"
                )
        markers = {match.start(): match for match in _MARKER.finditer(text)}
        for region in self.python(document):
            source = str(region.parsed)
            marker = _MARKER_LAST.search(text, 0, region.start)
            includes = [_INCLUDE.match(line) for line in source.splitlines() if line.strip()]
            if marker is not None:
                markers.pop(marker.start(), None)
                reason = " ".join(marker.group(1).split())
                if not reason:
                    raise ValueError(
                        f"{document.path}, {document.line_column(marker.start())}: a "
                        "fragment marker needs its reason: <!-- fragment: why -->"
                    )
                region.parsed = Block("fragment", region.parsed, reason)
            elif includes and all(includes):
                paths = ", ".join(match.group(1) for match in includes if match)
                region.parsed = Block("include", region.parsed, paths)
            else:
                region.parsed = Block("python", region.parsed)
            yield region
        for shell in self.shells:
            for region in shell(document):
                region.parsed = Block("shell", region.parsed)
                yield region
        for marker in markers.values():
            raise ValueError(
                f"{document.path}, {document.line_column(marker.start())}: a fragment "
                "marker must be the line right before a ```python block"
            )


SYBIL = Sybil(parsers=[PageParser()], path="..")
DOCUMENTS = {page: SYBIL.parse(ROOT / page) for page in PAGES}
EXAMPLES = [
    pytest.param(page, example, id=f"{page}:{example.line}:{example.parsed.kind}")
    for page, document in DOCUMENTS.items()
    for example in document
]


# -- helpers --------------------------------------------------------------------------


def check_shell(example: Example, block: Block) -> None:
    """Each ``nexus-reactive`` command parses with the CLI's parser; each ``make``
    target is in the Makefile."""
    __tracebackhide__ = True
    targets = set(_MAKE_TARGET.findall((ROOT / "Makefile").read_text()))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project.get("optional-dependencies", {}))
    for number, line in enumerate(block.source.splitlines()):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            pytest.fail(f"{example.path}, line {example.line + 1 + number}: {exc}", False)
        words = [word for word in words if word != "&"]
        where = f"{example.path}, line {example.line + 1 + number}: {line.strip()}"
        if words[:1] == ["make"]:
            missing = [target for target in words[1:] if target not in targets]
            assert not missing, f"{where}: no such make target {missing}"
        if Path(words[0] if words else "").name in ("pip", "pip3") and "install" in words:
            for word in words:
                match = re.fullmatch(r"\.\[([\w,-]+)\]", word)
                unknown = set(match.group(1).split(",")) - extras if match else set()
                assert not unknown, f"{where}: pyproject.toml has no extra {sorted(unknown)}"
        command = None
        if words and Path(words[0]).name == "nexus-reactive":
            command = words[1:]
        elif words[:3] in (["python", "-m", "nexus_reactive"], ["python3", "-m", "nexus_reactive"]):
            command = words[3:]
        if command is not None:
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors):
                    build_parser().parse_args(command)
            except SystemExit:
                pytest.fail(f"{where}: {errors.getvalue().strip()}", pytrace=False)


def _compile(source: str, example: Example, *, top_level_await: bool = False) -> Any:
    """Compile a block so that its line numbers are the page's."""
    __tracebackhide__ = True
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if top_level_await else 0
    offset = example.parsed.source.line_offset
    padded = "\n" * (example.line + offset) + source
    try:
        return compile(padded, example.path, "exec", flags=flags, dont_inherit=True)
    except SyntaxError as exc:
        error = f"{example.path}, line {exc.lineno}: {exc.msg}"
    pytest.fail(error, pytrace=False)
