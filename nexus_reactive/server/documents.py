"""The documents a :class:`~.docsearch.DocsEngine` answers from, cut into passages.

Finding the files (a folder, or the project's own ``README.md`` and ``docs/``, see
:func:`project_docs_root`), reading them, cutting Markdown and reStructuredText into
sections by their headings, packing each section's paragraphs into passages of
bounded size (:data:`PASSAGE_CHARS`) titled by their heading path (``"README > A
tour > Errors"``), and splitting passages into sentences. No search here: the
index is :mod:`.docsearch`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

__all__ = [
    "CORPUS",
    "DOC_SUFFIXES",
    "PASSAGE_CHARS",
    "Passage",
    "folder_docs",
    "project_docs_root",
    "project_files",
    "read_passages",
]

#: The files a :class:`~.docsearch.DocsEngine` reads, by suffix (compared case-insensitively).
DOC_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
_MARKDOWN = frozenset({".md", ".markdown"})

#: Where an installed package keeps the project's documentation: the wheel maps
#: ``README.md`` and ``docs/`` here (``[tool.hatch.build.targets.wheel.force-include]``
#: in pyproject.toml). A source checkout has no such folder and reads the repository's.
CORPUS = Path(__file__).resolve().with_name("corpus")
_REPOSITORY = Path(__file__).resolve().parents[2]

#: Passages are packed from whole paragraphs up to about this many characters; a
#: longer paragraph is cut at a line, sentence or word boundary.
PASSAGE_CHARS = 900
#: A section's opening (its first sentence) is indexed again, weighted, up to this long.
_OPENING_CHARS = 300

# pymdownx snippet includes and mkdocstrings directives: build instructions, not prose.
_DIRECTIVE = re.compile(r"^(?::::|-{2}8<-{2})")


@dataclass(frozen=True, slots=True)
class Passage:
    """A passage of a document: what the engine indexes and quotes."""

    title: str  # shown: label and heading path, without a document's lone top heading
    headings: str  # indexed: label and every heading above the passage
    opening: str  # indexed: the section's first sentence, in its first passage only
    text: str
    path: Path
    sentences: tuple[str, ...]


def project_docs_root() -> Path:
    """Where the project's own documentation is: in the package, or in a source checkout.

    Returns:
        :data:`CORPUS` in an installed package (the wheel puts ``README.md`` and
        ``docs/`` there), else the repository root of a source checkout.

    Raises:
        ConfigError: neither has a ``README.md`` or ``docs/`` folder.
    """
    for root in (CORPUS, _REPOSITORY):
        if (root / "README.md").is_file() or (root / "docs").is_dir():
            return root
    raise ConfigError(
        f"the project's documentation is not installed: looked in {CORPUS} (where a wheel "
        f"puts it) and in {_REPOSITORY} (a source checkout); reinstall the package, or pass "
        "DocsEngine(folder=...) a folder of .md, .txt or .rst files"
    )


def project_files(root: Path) -> list[tuple[Path, str]]:
    docs, readme = root / "docs", root / "README.md"
    files = _walk(docs, root) if docs.is_dir() else []
    if readme.is_file():
        files.insert(0, (readme, "README"))
    return files


def folder_docs(folder: Path) -> list[tuple[Path, str]]:
    if not folder.is_dir():
        raise ConfigError(
            f"{os.fspath(folder)!r} is not a folder; pass DocsEngine(folder=...) an "
            "existing folder of .md, .txt or .rst files"
        )
    return _walk(folder, folder)


def _walk(folder: Path, relative_to: Path) -> list[tuple[Path, str]]:
    """Every document under ``folder``, sorted, labelled by its path without suffix."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        # Pruning in place stops os.walk from entering hidden folders (.git, .venv...).
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if not name.startswith(".") and path.suffix.lower() in DOC_SUFFIXES:
                label = path.relative_to(relative_to).with_suffix("").as_posix()
                found.append((path, label))
    return found


def read_passages(path: Path, label: str) -> list[Passage]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []  # unreadable (permissions, a dangling link): the rest still answers
    suffix = path.suffix.lower()
    if suffix in _MARKDOWN:
        text = "\n".join(line for line in text.splitlines() if not _DIRECTIVE.match(line))
        sections = _markdown_sections(text)
    elif suffix == ".rst":
        sections = _rst_sections(text)
    else:
        sections = [([], text.splitlines())]
    passages: list[Passage] = []
    # A document with one top-level heading is titled by it, and the label already
    # names the document: "README > Errors" reads better than "README > nexus-reactive
    # > Errors".
    top_headings = sum(1 for headings, _ in sections if len(headings) == 1 and headings[0])
    for headings, lines in sections:
        shown = headings[1:] if top_headings == 1 else headings
        title = " > ".join([label, *(h for h in shown if h)])
        # The label names the document, so a lone top heading is indexed only with the
        # document's introduction: repeated on every section, it would match them all.
        indexed = shown if top_headings == 1 and len(headings) > 1 else headings
        keywords = " ".join([label.replace("/", " "), *indexed])
        paragraphs = list(_paragraphs(lines))
        # The opening is the section's first prose: a code block or a table's header
        # row says nothing about what the section is for.
        prose = next((p for p in paragraphs if not _FENCE.match(p) and not _TABLE.match(p)), "")
        opening = next(sentences(prose), "")[:_OPENING_CHARS]
        for number, chunk in enumerate(_pack(paragraphs)):
            passages.append(
                Passage(
                    title,
                    keywords,
                    opening if number == 0 else "",
                    chunk,
                    path,
                    tuple(sentences(chunk)),
                )
            )
    return passages


# -- cutting documents into passages --------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_TABLE = re.compile(r"^ {0,3}\|")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`*+#:._!$%&,;<>?@|/\\])\1{2,}[ \t]*$")

# A section: its heading path (one entry a level, "" where a level is skipped) and lines.
_Section = tuple[list[str], list[str]]


def _markdown_sections(text: str) -> list[_Section]:
    lines = text.splitlines()
    if lines and lines[0].strip() == "---":  # YAML front matter is metadata, not prose
        end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
        if end is not None:
            lines = lines[end + 1 :]
    sections: list[_Section] = [([], [])]
    fence: str | None = None
    for line in lines:
        body = sections[-1][1]
        opening = _FENCE.match(line)
        if fence is not None:
            if opening and opening.group(1).startswith(fence):
                fence = None
            body.append(line)
            continue
        if opening:
            fence = opening.group(1)
            body.append(line)
            continue
        heading = _ATX.match(line)
        if heading:
            level, title = len(heading.group(1)), (heading.group(2) or "").strip()
            sections.append((_nest(sections[-1][0], level, title), []))
            continue
        underline = _SETEXT.match(line)
        # Setext heading: a one-line paragraph underlined with "=" or "-" (a "---"
        # after a blank line is a thematic break, left in the text).
        if (
            underline
            and len(body) >= 1
            and body[-1].strip()
            and (len(body) == 1 or not body[-2].strip())
        ):
            title = body.pop().strip()
            level = 1 if underline.group(1).startswith("=") else 2
            sections.append((_nest(sections[-1][0], level, title), []))
            continue
        body.append(line)
    return sections


def _rst_sections(text: str) -> list[_Section]:
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []  # reST ranks heading styles by first appearance
    sections: list[_Section] = [([], [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        overline = _RST_ADORNMENT.match(line)
        if (
            overline
            and i + 2 < len(lines)
            and lines[i + 1].strip()
            and lines[i + 2].strip() == line.strip()
        ):
            title, style, step = lines[i + 1].strip(), (line.strip()[0], True), 3
        elif (
            i + 1 < len(lines)
            and line.strip()
            and not _RST_ADORNMENT.match(line)
            and (under := _RST_ADORNMENT.match(lines[i + 1]))
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        ):
            title, style, step = line.strip(), (under.group(1), False), 2
        else:
            sections[-1][1].append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        sections.append((_nest(sections[-1][0], styles.index(style) + 1, title), []))
        i += step
    return sections


def _nest(path: list[str], level: int, title: str) -> list[str]:
    """The heading path after a heading of ``level`` (1-based) titled ``title``."""
    parent = path[: level - 1]
    return [*parent, *[""] * (level - 1 - len(parent)), title]


def _paragraphs(lines: list[str]) -> Iterator[str]:
    """Blank-line separated blocks; a fenced code block stays whole."""
    block: list[str] = []
    fence: str | None = None
    for line in lines:
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and opening and opening.group(1).startswith(fence):
            fence = None
        if fence is None and not line.strip():
            if block:
                yield "\n".join(block).strip("\n")
                block = []
            continue
        block.append(line.rstrip())
    if block:
        yield "\n".join(block).strip("\n")


def _pack(paragraphs: Iterable[str]) -> Iterator[str]:
    """Whole paragraphs joined into passages of at most about ``PASSAGE_CHARS``."""
    current = ""
    for paragraph in paragraphs:
        for piece in _cut(paragraph, PASSAGE_CHARS):
            if current and len(current) + 2 + len(piece) > PASSAGE_CHARS:
                yield current
                current = ""
            current = f"{current}\n\n{piece}" if current else piece
    if current:
        yield current


def _cut(text: str, limit: int) -> Iterator[str]:
    """``text`` in pieces of at most ``limit`` characters, cut where it reads best."""
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = max(text.rfind(". ", 0, limit - 1) + 1, text.rfind("\n", 0, limit))
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut <= 0:
            cut = limit
        yield text[:cut].rstrip()
        text = text[cut:].lstrip()
    if text:
        yield text


# -- sentences ----------------------------------------------------------------------


_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def sentences(text: str) -> Iterator[str]:
    """The passage's sentences: list items, code lines and prose sentences, one line each."""
    for block in _paragraphs(text.splitlines()):
        lines = block.splitlines()
        if lines and _FENCE.match(lines[0]):
            for line in lines:
                if line.strip() and not _FENCE.match(line):
                    yield " ".join(line.split())
            continue
        units: list[str] = []
        for line in lines:
            if _TABLE.match(line):
                # A table row is a sentence of its own; its |---| rule is none.
                if line.strip("|-: \t"):
                    units.append(" | ".join(cell.strip() for cell in line.strip(" |").split("|")))
                continue
            if _LIST_MARKER.match(line) or not units:
                units.append(_LIST_MARKER.sub("", line, count=1))
            else:
                units[-1] += " " + line
        for unit in units:
            for sentence in _SENTENCE_END.split(" ".join(unit.split())):
                if sentence:
                    yield sentence
