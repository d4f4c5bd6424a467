"""An engine that answers from documents: SQLite FTS5 search, extractive answers.

:class:`DocsEngine` reads the text and Markdown files of a folder (by default the
project's own ``README.md`` and ``docs/``, which ship inside the package), cuts them
into passages of bounded size titled by their heading path (``"README > A tour >
Errors"``), and indexes them in an in-memory SQLite database with FTS5: the
``porter`` tokenizer (so "reconnecting", "reconnection" and "reconnects" meet) and
``bm25()`` ranking, in which a passage's headings and its section's opening weigh more
than the rest of its text (:data:`WEIGHTS`). Each ask gets the best passage as
``context`` and, as the answer, the one to three sentences of that passage that best
match the question, quoted as they are: the engine retrieves, it does not write.

Everything is built once, in the constructor, so a missing or empty folder fails at
startup with a :class:`~nexus_reactive.errors.ConfigError` and a call does no file
I/O: two indexed queries on an in-memory database, quick enough for the event loop
(the server calls synchronous engines there, see :mod:`.engine`). The database is
never written after construction, so overlapping calls are safe.

Example::

    from nexus_reactive.server import create_app
    from nexus_reactive.server.docsearch import DocsEngine

    app = create_app(api_keys="secret", engine=DocsEngine("docs/"))
"""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..messages import AskRequest, AskResponse, Usage
from .engine import count_tokens

__all__ = [
    "CORPUS",
    "DOC_SUFFIXES",
    "SYNONYMS",
    "WEIGHTS",
    "DocsEngine",
    "Hit",
    "project_docs_root",
]

#: The files a :class:`DocsEngine` reads, by suffix (compared case-insensitively).
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
#: The answer quotes at most this many sentences, and at most this many characters.
ANSWER_SENTENCES = 3
ANSWER_CHARS = 600
_SENTENCE_CHARS = 300
#: A section's opening (its first sentence) is indexed again, weighted, up to this long.
_OPENING_CHARS = 300

#: The weights of the indexed fields: the heading path (document name and every
#: heading above the passage), the section's opening sentence (only in its first
#: passage), and the passage's text. A passage's score is the weighted sum of each
#: field's ``bm25()``, not one ``bm25()`` with column weights: that one weights term
#: frequencies before BM25 saturates them, so a heading could never count for much more
#: than a word repeated in the text.
WEIGHTS = (2.0, 1.5, 1.0)
# "_" is part of a word, so that an identifier such as ``retry_after`` is one term;
# :func:`_indexed` adds its words too, so that "retry" still finds it.
_TOKENIZER = "porter unicode61 remove_diacritics 2 tokenchars _"

# Short on purpose: words that say nothing about a topic, including question words,
# since asks are questions. FTS5 has no stop words of its own.
_STOP_WORD_LIST = """a about after all also am an and any are as at be been before but by can
could did do does doing for from had has have how i if in into is it its just me more my no
not of on or our out should so some such than that the their them then there these they this
those to too up use using very was we were what when where which who whom why will with would
you your"""
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())
#: Words a user asks with that the documentation spells otherwise: the abbreviations
#: identifiers use (``max_message_size``), and the everyday words for a topic the docs
#: name by its title ("how fast" is a question about "Performance"). Each is looked for
#: too, as an alternative; porter stemming already joins a word's inflections. Small on
#: purpose: a synonym that is not one everywhere in these docs ranks wrong passages.
SYNONYMS: dict[str, tuple[str, ...]] = {
    "maximum": ("max", "limit"),
    "max": ("maximum", "limit"),
    "minimum": ("min",),
    "min": ("minimum",),
    "auth": ("authentication",),
    "config": ("configuration",),
    "configuration": ("config",),
    "fast": ("performance",),
    "faster": ("performance",),
    "slow": ("performance",),
    "speed": ("performance",),
    "benchmark": ("performance",),
    "benchmarks": ("performance",),
}
# Letters and digits; "-" and "." separate words, "_" joins them into an identifier.
_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*")
_IDENTIFIER = re.compile(r"[^\W_]+(?:_[^\W_]+)+")
# pymdownx snippet includes and mkdocstrings directives: build instructions, not prose.
_DIRECTIVE = re.compile(r"^(?::::|-{2}8<-{2})")


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found by :meth:`DocsEngine.search`.

    Attributes:
        title: the document's name and heading path, e.g. ``"README > Errors"``.
        text: the passage, as written in the file.
        score: how well it matches the query: ``-bm25()``, higher is better, always > 0.
        path: the file it comes from.
    """

    title: str
    text: str
    score: float
    path: Path


@dataclass(frozen=True, slots=True)
class _Passage:
    title: str  # shown: label and heading path, without a document's lone top heading
    headings: str  # indexed: label and every heading above the passage
    opening: str  # indexed: the section's first sentence, in its first passage only
    text: str
    path: Path
    sentences: tuple[str, ...]


class DocsEngine:
    """Answers asks from a folder of documents (see the module docstring).

    A "token" in the ``usage`` it reports is what :func:`~.engine.count_tokens`
    counts (a whitespace-separated word), as for every engine of this server:
    ``prompt_tokens`` counts the query plus the context actually returned,
    ``completion_tokens`` the answer, and ``total_tokens`` their sum.

    ``team_id`` is ignored: every team searches the same documents.

    The files are read and indexed here, in the constructor, not lazily: a bad
    folder fails at startup rather than on the first ask, and an ask does no I/O.
    :meth:`close` (or ``with DocsEngine(...)``) frees the database; the garbage
    collector does too.

    Args:
        folder: the folder to read, recursively: every ``.md``, ``.markdown``,
            ``.txt`` and ``.rst`` file, skipping hidden files and folders, decoded
            as UTF-8 with undecodable bytes replaced. ``None``: the project's own
            documentation, ``README.md`` and ``docs/`` (see :func:`project_docs_root`).
        max_context_chars: the longest ``context`` returned; a longer passage is
            cut at a word boundary and ends with ``"…"``.

    Raises:
        ConfigError: the folder does not exist or holds no readable text, or (with
            ``folder=None``) the project's documentation is neither in the package
            nor in a source checkout; or ``max_context_chars`` is below 40.
    """

    def __init__(
        self, folder: str | os.PathLike[str] | None = None, *, max_context_chars: int = 1200
    ) -> None:
        if max_context_chars < 40:
            raise ConfigError(f"max_context_chars must be at least 40, got {max_context_chars}")
        self._max_context_chars = max_context_chars
        self._folder = None if folder is None else os.fspath(folder)
        if folder is None:
            root = project_docs_root()
            self._source = f"the project's documentation in {root}"
            files = _project_files(root)
        else:
            self._source = os.fspath(folder)
            files = _folder_docs(Path(folder))
        self._passages = [p for path, label in files for p in _read_passages(path, label)]
        if not self._passages:
            raise ConfigError(
                f"no text to search in {self._source}: it has no non-empty "
                f"{', '.join(sorted(DOC_SUFFIXES))} file; pass DocsEngine(folder=...) "
                "a folder that has some"
            )
        self._db = _build_index(self._passages)

    @property
    def passages(self) -> int:
        """How many passages are indexed."""
        return len(self._passages)

    def __repr__(self) -> str:
        return f"DocsEngine(folder={self._folder!r}, passages={len(self._passages)})"

    def close(self) -> None:
        """Free the in-memory database; the engine cannot answer after this."""
        self._db.close()

    def __enter__(self) -> DocsEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __call__(self, request: AskRequest, /) -> AskResponse:
        """Answer ``request`` from the best-matching passage.

        Args:
            request: the ask's payload; ``team_id`` is ignored.

        Returns:
            The best passage as ``context`` (``"title: text"``, cut to
            ``max_context_chars``) and its best-matching sentences as the answer;
            or, when no passage matches, an answer saying so and no context.
            ``usage`` is always filled in.
        """
        expression = match_expression(request.query)
        best = self._rank(expression, 1)
        if not best:
            shown = _shorten(" ".join(request.query.split()), 200) or "that"
            count = len(self._passages)
            answer = (
                f"I found nothing about {shown} in the documentation "
                f"({count} passage{'' if count == 1 else 's'} searched)."
            )
            return AskResponse(answer=answer, usage=_usage(request.query, None, answer))
        index = best[0][1]
        passage = self._passages[index]
        context = _shorten(f"{passage.title}: {passage.text}", self._max_context_chars)
        answer = f"From {passage.title}: {self._extract(index, expression)}"
        return AskResponse(
            answer=answer, context=context, usage=_usage(request.query, context, answer)
        )

    def search(self, query: str, k: int = 3) -> list[Hit]:
        """Return the ``k`` passages that best match ``query``, best first.

        Args:
            query: words to look for; stop-words are ignored.
            k: how many hits at most.

        Returns:
            Up to ``k`` hits, each with a positive score; ``[]`` when nothing matches.
        """
        hits: list[Hit] = []
        for score, index in self._rank(match_expression(query), k):
            passage = self._passages[index]
            hits.append(Hit(passage.title, passage.text, score, passage.path))
        return hits

    def _rank(self, expression: str | None, k: int) -> list[tuple[float, int]]:
        """The ``k`` best (score, passage index) pairs; ties go to the earlier passage."""
        if expression is None or k <= 0:
            return []
        rows = self._db.execute(_RANK, {"query": expression, "k": k}).fetchall()
        return [(float(score), int(passage)) for score, passage in rows]

    def _extract(self, index: int, expression: str | None) -> str:
        """The passage's 1-3 sentences that best match the query, in their order."""
        passage = self._passages[index]
        sentences = passage.sentences
        if not sentences:  # e.g. a passage that is only an empty code fence
            return _shorten(" ".join(passage.text.split()), ANSWER_CHARS)
        ranked: list[tuple[float, int]] = []
        if expression is not None:
            ranked = [
                (float(score), int(position))
                for score, position in self._db.execute(
                    "SELECT -bm25(sentences) AS score, position FROM sentences "
                    "WHERE sentences MATCH ? AND passage = ? ORDER BY score DESC, position",
                    (expression, index),
                )
            ]
        if not ranked:
            # Only the headings matched: the passage's opening is the fairest summary.
            chosen = list(range(min(2, len(sentences))))
        else:
            top = ranked[0][0]
            chosen = [i for score, i in ranked[:ANSWER_SENTENCES] if score >= top / 2]
        parts: list[str] = []
        used = 0
        for i in sorted(chosen):
            sentence = _shorten(sentences[i], _SENTENCE_CHARS)
            if parts and used + len(sentence) > ANSWER_CHARS:
                break
            parts.append(sentence)
            used += len(sentence) + 1
        return _join_sentences(parts)


def match_expression(query: str) -> str | None:
    """The FTS5 query for a question: its words, any of which may match.

    Stop-words and single letters are dropped; each word is quoted, so nothing in a
    question is read as FTS5 syntax. An identifier such as ``retry_after`` is one
    term, which finds it rather than every "retry", and also the phrase of its words.

    Args:
        query: the question, as asked.

    Returns:
        The MATCH expression, or ``None`` when no word is left to look for.
    """
    words = [
        token
        for token in _WORD.findall(query.lower())
        if token not in _STOP_WORDS and (len(token) > 1 or token.isdigit())
    ]
    # Ordered and distinct: repeating a word is not emphasis. Two words that follow each
    # other in the question also count as a phrase, so "event loop" or "close codes"
    # written together score above the same words scattered.
    terms = dict.fromkeys(f'"{word}"' for word in words)
    terms.update(dict.fromkeys(f'"{other}"' for w in words for other in SYNONYMS.get(w, ())))
    # An identifier is also its words in a row: "rate_limited" finds "rate limited".
    terms.update(dict.fromkeys(f'"{w.replace("_", " ")}"' for w in words if "_" in w))
    for a, b in itertools.pairwise(words):
        terms.update(
            dict.fromkeys(
                f'"{x} {y}"' for x in (a, *SYNONYMS.get(a, ())) for y in (b, *SYNONYMS.get(b, ()))
            )
        )
    return " OR ".join(terms) or None


#: The indexed fields, each an FTS5 table of its own (rowid: the passage's index), so
#: that BM25 normalises each by its own length: a short heading is not diluted by a
#: long passage under it.
_FIELDS = ("headings", "opening", "text")


def _score_sql(weights: tuple[float, ...]) -> str:
    """The SQL that ranks passages: the weighted sum of each field's ``-bm25()``."""
    parts = [
        f"SELECT rowid AS passage, {weight!r} * -bm25({field}) AS score "
        f"FROM {field} WHERE {field} MATCH :query"
        for field, weight in zip(_FIELDS, weights, strict=True)
    ]
    return (
        "SELECT sum(score) AS total, passage FROM ("
        + " UNION ALL ".join(parts)
        + ") GROUP BY passage ORDER BY total DESC, passage LIMIT :k"
    )


_RANK = _score_sql(WEIGHTS)


def _build_index(passages: list[_Passage]) -> sqlite3.Connection:
    # check_same_thread=False: built where the server starts, read on its loop's thread;
    # nothing writes after this function, so sharing the connection is safe.
    db = sqlite3.connect(":memory:", check_same_thread=False)
    for field in _FIELDS:
        db.execute(f"CREATE VIRTUAL TABLE {field} USING fts5(body, tokenize = '{_TOKENIZER}')")
        db.executemany(
            f"INSERT INTO {field} (rowid, body) VALUES (?, ?)",
            ((i, _indexed(getattr(p, field))) for i, p in enumerate(passages)),
        )
    db.execute(
        "CREATE VIRTUAL TABLE sentences USING fts5(body, passage UNINDEXED, "
        f"position UNINDEXED, tokenize = '{_TOKENIZER}')"
    )
    db.executemany(
        "INSERT INTO sentences (body, passage, position) VALUES (?, ?, ?)",
        ((_indexed(s), i, j) for i, p in enumerate(passages) for j, s in enumerate(p.sentences)),
    )
    db.commit()
    return db


def _indexed(text: str) -> str:
    """``text`` as indexed: each identifier followed by its words (``a_b`` -> ``a_b a b``)."""
    return _IDENTIFIER.sub(lambda m: f"{m[0]} {m[0].replace('_', ' ')}", text)


# -- finding and reading files ---------------------------------------------------


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


def _project_files(root: Path) -> list[tuple[Path, str]]:
    docs, readme = root / "docs", root / "README.md"
    files = _walk(docs, root) if docs.is_dir() else []
    if readme.is_file():
        files.insert(0, (readme, "README"))
    return files


def _folder_docs(folder: Path) -> list[tuple[Path, str]]:
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


def _read_passages(path: Path, label: str) -> list[_Passage]:
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
    passages: list[_Passage] = []
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
        opening = next(_sentences(prose), "")[:_OPENING_CHARS]
        for number, chunk in enumerate(_pack(paragraphs)):
            passages.append(
                _Passage(
                    title,
                    keywords,
                    opening if number == 0 else "",
                    chunk,
                    path,
                    tuple(_sentences(chunk)),
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


def _sentences(text: str) -> Iterator[str]:
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


def _join_sentences(parts: list[str]) -> str:
    joined = ""
    for part in parts:
        if joined:
            joined += " " if joined[-1] in ".!?:;…" else "; "
        joined += part
    return joined


def _shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, ending in "…"."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    if cut < limit // 2:
        cut = limit - 1
    return text[:cut].rstrip() + "…"


def _usage(query: str, context: str | None, answer: str) -> Usage:
    prompt = count_tokens(query) + (count_tokens(context) if context else 0)
    completion = count_tokens(answer)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
