"""An engine that answers from a folder of documents: BM25 search, extractive answers.

:class:`DocsEngine` reads the text and Markdown files of a folder (by default the
project's own ``README.md`` and ``docs/``), cuts them into passages of bounded size
titled by their heading path (``"README > A tour > Errors"``), and indexes them with
BM25. Each ask gets the best passage as ``context`` and, as the answer, the one to
three sentences of that passage that best match the question, quoted as they are:
the engine retrieves, it does not write.

Everything is built once, in the constructor, so a missing or empty folder fails at
startup with a :class:`~nexus_reactive.errors.ConfigError` and a call does no I/O: it
walks only the postings of the query's terms, so it is quick enough for the event loop
(the server calls synchronous engines there, see :mod:`.engine`). The index is never
changed after construction, so overlapping calls are safe.

Example::

    from nexus_reactive.server import create_app
    from nexus_reactive.server.docsearch import DocsEngine

    app = create_app(api_keys="secret", engine=DocsEngine("docs/"))
"""

from __future__ import annotations

import heapq
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..messages import AskRequest, AskResponse, Usage
from .engine import count_tokens

__all__ = ["DOC_SUFFIXES", "DocsEngine", "Hit"]

#: The files a :class:`DocsEngine` reads, by suffix (compared case-insensitively).
DOC_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".rst"})
_MARKDOWN = frozenset({".md", ".markdown"})

#: Passages are packed from whole paragraphs up to about this many characters; a
#: longer paragraph is cut at a line, sentence or word boundary.
PASSAGE_CHARS = 900
#: The answer quotes at most this many sentences, and at most this many characters.
ANSWER_SENTENCES = 3
ANSWER_CHARS = 600
_SENTENCE_CHARS = 300

# BM25's usual constants: term-frequency saturation and length normalisation.
_K1 = 1.2
_B = 0.75
# Heading words describe the whole passage, so they count as if written twice.
_TITLE_WEIGHT = 2

# Short on purpose: words that say nothing about a topic, including question words,
# since asks are questions.
_STOP_WORD_LIST = """a about after all also am an and any are as at be been before but by can
could did do does doing for from had has have how i if in into is it its just me more my no
not of on or our out should so some such than that the their them then there these they this
those to too up use using very was we were what when where which who whom why will with would
you your"""
_STOP_WORDS = frozenset(_STOP_WORD_LIST.split())
# Letters and digits; "-" and "." separate words, "_" joins them into an identifier.
_WORD = re.compile(r"[^\W_]+(?:_[^\W_]+)*")
_VOWELS = frozenset("aeiouy")


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found by :meth:`DocsEngine.search`.

    Attributes:
        title: the document's name and heading path, e.g. ``"README > Errors"``.
        text: the passage, as written in the file.
        score: its BM25 score for the query (higher is better; always > 0).
        path: the file it comes from.
    """

    title: str
    text: str
    score: float
    path: Path


@dataclass(frozen=True, slots=True)
class _Passage:
    title: str  # shown: label and heading path, without a document's lone top heading
    keywords: str  # indexed: label and every heading above the passage
    text: str
    path: Path


class DocsEngine:
    """Answers asks from a folder of documents (see the module docstring).

    A "token" in the ``usage`` it reports is what :func:`~.engine.count_tokens`
    counts (a whitespace-separated word), as for every engine of this server:
    ``prompt_tokens`` counts the query plus the context actually returned,
    ``completion_tokens`` the answer, and ``total_tokens`` their sum.

    ``team_id`` is ignored: every team searches the same documents.

    The files are read and indexed here, in the constructor, not lazily: a bad
    folder fails at startup rather than on the first ask, and an ask does no I/O.

    Args:
        folder: the folder to read, recursively: every ``.md``, ``.markdown``,
            ``.txt`` and ``.rst`` file, skipping hidden files and folders, decoded
            as UTF-8 with undecodable bytes replaced. ``None``: the project's own
            documentation, ``docs/`` and ``README.md`` at the repository root.
        max_context_chars: the longest ``context`` returned; a longer passage is
            cut at a word boundary and ends with ``"…"``.

    Raises:
        ConfigError: the folder does not exist, holds no readable text, or (with
            ``folder=None``) the project's documentation is not there, as in an
            installed package; or ``max_context_chars`` is below 40.
    """

    def __init__(
        self, folder: str | os.PathLike[str] | None = None, *, max_context_chars: int = 1200
    ) -> None:
        if max_context_chars < 40:
            raise ConfigError(f"max_context_chars must be at least 40, got {max_context_chars}")
        self._max_context_chars = max_context_chars
        self._folder = None if folder is None else os.fspath(folder)
        if folder is None:
            self._source = "the project's documentation"
            files = _project_docs()
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
        self._stems: dict[str, str] = {}
        self._build_index()

    @property
    def passages(self) -> int:
        """How many passages are indexed."""
        return len(self._passages)

    def __repr__(self) -> str:
        return f"DocsEngine(folder={self._folder!r}, passages={len(self._passages)})"

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
        terms = self._query_terms(request.query)
        best = self._rank(terms, 1)
        if not best:
            shown = _shorten(" ".join(request.query.split()), 200) or "that"
            count = len(self._passages)
            answer = (
                f"I found nothing about {shown} in the documentation "
                f"({count} passage{'' if count == 1 else 's'} searched)."
            )
            return AskResponse(answer=answer, usage=_usage(request.query, None, answer))
        passage = self._passages[best[0][1]]
        context = _shorten(f"{passage.title}: {passage.text}", self._max_context_chars)
        answer = f"From {passage.title}: {self._extract(passage.text, terms)}"
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
        for score, index in self._rank(self._query_terms(query), k):
            passage = self._passages[index]
            hits.append(Hit(passage.title, passage.text, score, passage.path))
        return hits

    # -- the index ---------------------------------------------------------------

    def _build_index(self) -> None:
        postings: dict[str, list[tuple[int, int]]] = {}
        lengths: list[int] = []
        for index, passage in enumerate(self._passages):
            counts = Counter(self._terms(passage.text, learn=True))
            for term in self._terms(passage.keywords, learn=True):
                counts[term] += _TITLE_WEIGHT
            lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                postings.setdefault(term, []).append((index, tf))
        total = len(lengths)
        average = sum(lengths) / total or 1.0
        # The "+1" form of BM25's idf stays positive for a term found everywhere, so any
        # match scores above 0 and "score 0" means exactly "nothing matched".
        self._idf = {
            term: math.log(1.0 + (total - len(docs) + 0.5) / (len(docs) + 0.5))
            for term, docs in postings.items()
        }
        self._postings = postings
        self._norms = [_K1 * (1.0 - _B + _B * length / average) for length in lengths]

    def _rank(self, terms: Iterable[str], k: int) -> list[tuple[float, int]]:
        """The ``k`` best (score, passage index) pairs; ties go to the earlier passage."""
        scores: dict[int, float] = {}
        norms = self._norms
        for term in terms:
            idf = self._idf.get(term)
            if idf is None:
                continue
            for index, tf in self._postings[term]:
                scores[index] = scores.get(index, 0.0) + idf * tf * (_K1 + 1) / (tf + norms[index])
        best = heapq.nsmallest(max(k, 0), ((-s, i) for i, s in scores.items()))
        return [(-negative, index) for negative, index in best]

    def _query_terms(self, query: str) -> list[str]:
        # Each distinct term counts once: repeating a word in a question is not emphasis.
        return list(dict.fromkeys(self._terms(query)))

    def _terms(self, text: str, *, learn: bool = False) -> list[str]:
        """The indexed terms of ``text``, in order.

        An identifier such as ``retry_after`` gives itself, unstemmed, and then each
        of its words, so that asking for it finds it rather than every "retry".

        ``learn`` remembers each new word's term, which makes indexing several times
        faster (words repeat a lot); only indexing learns, so that a stream of asks
        full of new words cannot grow the memory.
        """
        stems = self._stems
        terms: list[str] = []
        for token in _WORD.findall(text.lower()):
            if "_" in token:
                terms.append(token)
                words = token.split("_")
            else:
                words = [token]
            for word in words:
                stem = stems.get(word)
                if stem is None:
                    stem = _term(word)
                    if learn:
                        stems[word] = stem
                if stem:
                    terms.append(stem)
        return terms

    # -- the answer --------------------------------------------------------------

    def _extract(self, text: str, terms: list[str]) -> str:
        """The passage's 1-3 sentences that best match ``terms``, in their order."""
        sentences = list(_sentences(text))
        if not sentences:  # e.g. a passage that is only an empty code fence
            return _shorten(" ".join(text.split()), ANSWER_CHARS)
        wanted = set(terms)
        scored = [
            (sum(self._idf.get(t, 0.0) for t in wanted.intersection(self._terms(s))), i)
            for i, s in enumerate(sentences)
        ]
        ranked = sorted(scored, key=lambda pair: (-pair[0], pair[1]))
        top = ranked[0][0]
        if top == 0.0:
            # Only the title matched: the passage's opening is the fairest summary.
            chosen = list(range(min(2, len(sentences))))
        else:
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


# -- finding and reading files ---------------------------------------------------


def _project_docs() -> list[tuple[Path, str]]:
    root = Path(__file__).resolve().parents[2]
    docs, readme = root / "docs", root / "README.md"
    files = _walk(docs, root) if docs.is_dir() else []
    if readme.is_file():
        files.insert(0, (readme, "README"))
    if not files:
        raise ConfigError(
            f"the project's documentation is not here (looked for {docs} and {readme}; "
            "an installed package has neither); pass DocsEngine(folder=...) a folder of "
            ".md, .txt or .rst files"
        )
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
        # mkdocstrings directives (`::: package.Name`) are build instructions, not prose.
        text = "\n".join(line for line in text.splitlines() if not line.startswith(":::"))
        sections = _markdown_sections(text)
    elif suffix == ".rst":
        sections = _rst_sections(text)
    else:
        sections = [([], text.splitlines())]
    passages: list[_Passage] = []
    # A document with one top-level heading is titled by it, and the label already
    # names the document: "README > Errors" reads better than "README > nexus-reactive
    # > Errors". The heading's words are still indexed.
    top_headings = sum(1 for headings, _ in sections if len(headings) == 1 and headings[0])
    for headings, lines in sections:
        shown = headings[1:] if top_headings == 1 else headings
        title = " > ".join([label, *(h for h in shown if h)])
        keywords = " ".join([label, *headings])
        for chunk in _pack(_paragraphs(lines)):
            passages.append(_Passage(title, keywords, chunk, path))
    return passages


# -- cutting documents into passages --------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
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


# -- words and sentences -----------------------------------------------------------


def _term(word: str) -> str:
    """The term ``word`` (lowercase) is indexed as; ``""`` for a word not indexed."""
    if word in _STOP_WORDS or (len(word) == 1 and not word.isdigit()):
        return ""
    return _stem(word)


def _stem(word: str) -> str:
    """A light suffix-stripper: plurals, "-ing", "-ed", "-ion", a final "e".

    Crude next to Porter's, but applied the same way to documents and queries, so
    "retries"/"retry", "reconnecting"/"reconnection"/"reconnect" and
    "certificates"/"certificate" meet.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("ied") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("ing") and len(word) > 5:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) > 4:
        word = _undouble(word[:-2])
    elif word.endswith("ion") and len(word) > 6:
        word = word[:-3]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def _undouble(word: str) -> str:
    # "stopped" -> "stopp" -> "stop"; but "called" -> "call" keeps its "ll".
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in _VOWELS and word[-1] not in "lsz":
        return word[:-1]
    return word


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
