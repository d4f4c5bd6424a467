"""An engine that answers from documents: SQLite FTS5 search, extractive answers.

:class:`DocsEngine` reads the text and Markdown files of a folder (by default the
project's own ``README.md`` and ``docs/``, which ship inside the package), cuts them
into passages of bounded size titled by their heading path (``"README > A tour >
Errors"``; that is :mod:`.documents`), and indexes them in an in-memory SQLite database
with FTS5: the ``porter`` tokenizer (so "reconnecting", "reconnection" and "reconnects"
meet) and ``bm25()`` ranking, in which a passage's headings and its section's opening
weigh more than the rest of its text (:data:`WEIGHTS`). Each ask gets the best passage
as ``context`` and, as the answer, the one to three sentences of that passage that best
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
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..messages import AskRequest, AskResponse, Usage
from .documents import (
    CORPUS,
    DOC_SUFFIXES,
    Passage,
    folder_docs,
    project_docs_root,
    project_files,
    read_passages,
)
from .documents import PASSAGE_CHARS as PASSAGE_CHARS  # re-exported: where it always was
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

#: The answer quotes at most this many sentences, and at most this many characters.
ANSWER_SENTENCES = 3
ANSWER_CHARS = 600
_SENTENCE_CHARS = 300
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
            files = project_files(root)
        else:
            self._source = os.fspath(folder)
            files = folder_docs(Path(folder))
        self._passages = [p for path, label in files for p in read_passages(path, label)]
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


def _build_index(passages: list[Passage]) -> sqlite3.Connection:
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


# -- composing the answer ---------------------------------------------------------


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
