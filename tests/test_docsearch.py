"""DocsEngine: passages, FTS5 ranking, extractive answers and usage, without sockets;
then one ask through the real server and client over loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus_reactive import AskRequest, AskResponse, ConfigError, WebSocketService
from nexus_reactive.server import count_tokens
from nexus_reactive.server.docsearch import PASSAGE_CHARS, DocsEngine, Hit
from nexus_reactive.server.engine import run_engine

from .conftest import KEY, Nexus, ServerFactory

RECONNECT = """\
# Reconnection

The client reconnects on its own when the connection drops.

## Backoff

Between attempts the client waits, and each wait doubles up to a cap.
Exponential backoff with jitter spreads the clients out after an outage.
The first wait is the reconnect interval.

## Giving up

After max_reconnect_attempts failed attempts the client stops and reports the failure.
A wrong key is never retried.
"""

TLS = """\
# TLS

Use wss:// URLs to encrypt the connection.

## Certificates

The server presents a certificate signed by a certificate authority.
Pass an SSL context to trust a private authority, for instance a self-signed certificate
in tests.

## Hostname verification

The client checks that the certificate names the host it dialled.
"""

LIMITS = """\
Rate limiting
=============

The server limits how many asks each key may send per minute.

Quotas
------

When a key sends too many asks the server answers with the code rate_limited and a
retry_after value in seconds. Clients should wait that long before asking again.
"""

TOPICS = {"reconnect.md": RECONNECT, "tls.md": TLS, "limits.markdown": LIMITS}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in TOPICS.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def engine(docs: Path) -> DocsEngine:
    return DocsEngine(docs)


def ask(engine: DocsEngine, query: str, team_id: str | None = None) -> AskResponse:
    return engine(AskRequest(query=query, team_id=team_id))


# -- ranking -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "file", "title"),
    [
        ("exponential backoff jitter", "reconnect.md", "reconnect > Backoff"),
        ("how long does the client wait between attempts?", "reconnect.md", "reconnect > Backoff"),
        ("when does the client stop retrying", "reconnect.md", "reconnect > Giving up"),
        ("self-signed certificate authority", "tls.md", "tls > Certificates"),
        ("hostname verification", "tls.md", "tls > Hostname verification"),
        ("rate limited, retry_after", "limits.markdown", "limits > Quotas"),
        # An identifier is found as a whole, not as "retry" (in reconnect > Giving up).
        ("retry_after", "limits.markdown", "limits > Quotas"),
        ("how many asks per minute?", "limits.markdown", "limits"),
    ],
)
def test_the_passage_on_the_topic_wins(
    engine: DocsEngine, query: str, file: str, title: str
) -> None:
    hits = engine.search(query)
    assert hits, query
    assert (hits[0].path.name, hits[0].title) == (file, title)
    assert all(h.score > 0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_search_returns_at_most_k_hits_with_their_text(engine: DocsEngine) -> None:
    hits = engine.search("client", k=2)
    assert len(hits) == 2
    assert all("client" in h.text.lower() or "client" in h.title.lower() for h in hits)
    assert engine.search("client", k=0) == []


def test_plural_and_verb_forms_meet(engine: DocsEngine) -> None:
    # "certificates" ~ "certificate", "retries" ~ "retried", "reconnecting" ~ "reconnects"
    assert engine.search("certificates")[0].path.name == "tls.md"
    assert "reconnect > Giving up" in [hit.title for hit in engine.search("retries", k=2)]
    assert engine.search("reconnecting")[0].path.name == "reconnect.md"


def test_a_user_s_word_finds_the_docs_spelling(tmp_path: Path) -> None:
    # "maximum" finds the identifier's "max" and a "Limits" heading; "fast" finds
    # "Performance" (SYNONYMS), while the plain word still counts as itself.
    (tmp_path / "a.md").write_text(
        "# Limits\n\nThe largest frame is max_frame_size.\n\n"
        "# Performance\n\nMeasured with the bench suite.\n\n"
        "# Sizes\n\nA message may be of any size the transport allows.\n",
        encoding="utf-8",
    )
    engine = DocsEngine(tmp_path)
    assert engine.search("What is the maximum frame size?")[0].title == "a > Limits"
    assert engine.search("How fast is it?")[0].title == "a > Performance"


def test_a_table_is_not_a_section_s_opening(tmp_path: Path) -> None:
    # The header row of a table that opens a section says nothing about the section;
    # the prose after it is its opening, weighted as such.
    (tmp_path / "a.md").write_text(
        "# Options\n\n| option | default |\n| --- | --- |\n| `team_id` | `None` |\n\n"
        "Every option is a keyword.\n",
        encoding="utf-8",
    )
    (passage,) = DocsEngine(tmp_path)._passages
    assert passage.opening == "Every option is a keyword."


def test_the_answer_quotes_a_table_s_matching_row(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(
        "# Options\n\nEvery option of the client.\n\n| option | default | what |\n"
        "| --- | --- | --- |\n| `heartbeat` | 15.0 | seconds between pings |\n"
        "| `request_timeout` | 60.0 | the bound on an ask |\n",
        encoding="utf-8",
    )
    response = DocsEngine(tmp_path)(AskRequest(query="What is request_timeout?"))
    assert response.answer == "From a: `request_timeout` | 60.0 | the bound on an ask"


def test_each_call_answers_from_the_best_passage(engine: DocsEngine) -> None:
    response = ask(engine, "How do I trust a self-signed certificate?")
    assert response.context is not None
    assert response.context.startswith("tls > Certificates: The server presents a certificate")
    assert response.answer.startswith("From tls > Certificates: ")
    assert "self-signed certificate" in response.answer
    # Extractive: every quoted sentence is in the file as written (modulo line breaks).
    quoted = response.answer.removeprefix("From tls > Certificates: ")
    assert quoted in " ".join(TLS.split())


def test_the_answer_quotes_the_best_sentences_not_the_whole_passage(engine: DocsEngine) -> None:
    response = ask(engine, "jitter outage")
    assert response.answer == (
        "From reconnect > Backoff: "
        "Exponential backoff with jitter spreads the clients out after an outage."
    )


def test_team_id_is_ignored(engine: DocsEngine) -> None:
    assert ask(engine, "backoff", team_id="team-a") == ask(engine, "backoff")


async def test_it_is_an_engine_the_server_can_run(engine: DocsEngine) -> None:
    response = await run_engine(engine, AskRequest(query="retry_after"))
    assert response.context is not None and response.context.startswith("limits > Quotas")


# -- passages and titles ---------------------------------------------------------------


def test_titles_follow_the_heading_path(tmp_path: Path) -> None:
    (tmp_path / "guide").mkdir()
    (tmp_path / "guide" / "setup.md").write_text(
        "# Setup\n\nIntro zebra.\n\n## Linux\n\nApt walrus.\n\n### Debian\n\nDpkg yak.\n\n"
        "## macOS\n\nBrew otter.\n\n```sh\n# not a heading: shell comment\nbrew install it\n```\n",
        encoding="utf-8",
    )
    (tmp_path / "two.md").write_text(
        "# One\n\nFirst heron.\n\n# Two\n\n#### Deep\n\nSecond ibis.\n", encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("Plain text about a narwhal.\n", encoding="utf-8")
    (tmp_path / "guide.rst").write_text(
        "=====\nGuide\n=====\n\nPreface lemur.\n\nInstall\n-------\n\nPip gecko.\n",
        encoding="utf-8",
    )
    engine = DocsEngine(tmp_path)

    def title(word: str) -> str:
        [hit] = engine.search(word)
        return hit.title

    # A lone top heading titles the document, which the label already names.
    assert title("zebra") == "guide/setup"
    assert title("walrus") == "guide/setup > Linux"
    assert title("yak") == "guide/setup > Linux > Debian"
    assert title("otter") == "guide/setup > macOS"
    assert "shell comment" in engine.search("otter")[0].text
    # Several top headings are kept; a skipped level leaves no empty step.
    assert title("heron") == "two > One"
    assert title("ibis") == "two > Two > Deep"
    assert title("narwhal") == "notes"
    assert title("lemur") == "guide"
    assert title("gecko") == "guide > Install"
    # The lone top heading's words are still indexed.
    assert engine.search("setup")[0].path.name == "setup.md"


def test_long_sections_are_cut_into_bounded_passages(tmp_path: Path) -> None:
    sentences = [f"Sentence {i} mentions the kraken." for i in range(300)]
    (tmp_path / "long.md").write_text(
        "## Monsters\n\n" + " ".join(sentences[:150]) + "\n\n" + "\n".join(sentences[150:]),
        encoding="utf-8",
    )
    engine = DocsEngine(tmp_path)
    hits = engine.search("kraken", k=100)
    assert engine.passages == len(hits) > 3
    assert all(len(h.text) <= PASSAGE_CHARS and h.title == "long > Monsters" for h in hits)
    # Nothing is lost in the cutting.
    assert " ".join(" ".join(h.text.split()) for h in sorted(hits, key=_first_number)) == " ".join(
        sentences
    )


def _first_number(hit: Hit) -> int:
    return int(hit.text.split()[1])  # "Sentence <n> mentions ..."


def test_context_is_cut_to_max_context_chars(docs: Path) -> None:
    engine = DocsEngine(docs, max_context_chars=60)
    context = ask(engine, "exponential backoff").context
    assert context is not None
    assert len(context) <= 60
    assert context.startswith("reconnect > Backoff: Between attempts")
    assert context.endswith("…")
    full = ask(DocsEngine(docs), "exponential backoff").context
    assert full is not None and full.startswith(context[:-1]) and len(full) > 60


def test_max_context_chars_too_small_is_a_config_error(docs: Path) -> None:
    with pytest.raises(ConfigError, match="max_context_chars"):
        DocsEngine(docs, max_context_chars=10)


def test_hidden_folders_and_other_files_are_skipped(docs: Path) -> None:
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.md").write_text("The platypus is hidden.\n", encoding="utf-8")
    (docs / ".draft.md").write_text("A hidden platypus draft.\n", encoding="utf-8")
    (docs / "script.py").write_text("# platypus\n", encoding="utf-8")
    (docs / "UPPER.TXT").write_text("A visible platypus.\n", encoding="utf-8")
    [hit] = DocsEngine(docs).search("platypus")
    assert hit.path.name == "UPPER.TXT"


def test_bytes_that_are_not_utf8_are_replaced(tmp_path: Path) -> None:
    (tmp_path / "latin1.md").write_bytes(
        b"# Caf\xe9\n\nThe espresso machine \xff\xfe needs descaling.\n"
    )
    engine = DocsEngine(tmp_path)
    [hit] = engine.search("espresso")
    assert "\ufffd" in hit.text
    assert "descaling" in ask(engine, "espresso descaling").answer


# -- no match, usage ---------------------------------------------------------------------


def test_no_match_says_so_plainly(engine: DocsEngine) -> None:
    response = ask(engine, "kubernetes helm")
    assert response.context is None
    assert response.answer == (
        f"I found nothing about kubernetes helm in the documentation "
        f"({engine.passages} passages searched)."
    )
    assert engine.search("kubernetes helm") == []


def test_a_query_of_stop_words_only_matches_nothing(engine: DocsEngine) -> None:
    response = ask(engine, "what is the")
    assert response.context is None
    assert response.answer.startswith("I found nothing about what is the in the documentation")
    assert engine.search("what is the") == []


@pytest.mark.parametrize("query", ["exponential backoff", "kubernetes", "what is the"])
def test_usage_counts_the_query_the_context_and_the_answer(docs: Path, query: str) -> None:
    response = ask(DocsEngine(docs, max_context_chars=80), query)
    usage = response.usage
    assert usage is not None
    assert usage.prompt_tokens == count_tokens(query) + count_tokens(response.context or "")
    assert usage.completion_tokens == count_tokens(response.answer) > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# -- configuration errors -------------------------------------------------------------


def test_an_empty_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder=") as info:
        DocsEngine(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_folder_of_blank_or_other_files_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "blank.md").write_text("\n   \n\n", encoding="utf-8")
    (tmp_path / "code.py").write_text("print('hello')\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no text to search"):
        DocsEngine(tmp_path)


@pytest.mark.parametrize("name", ["missing", "file.md"])
def test_a_path_that_is_not_a_folder_is_a_config_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "file.md").write_text("Some text.\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a folder"):
        DocsEngine(tmp_path / name)


# -- the project's own documentation ----------------------------------------------------


def test_without_a_folder_it_reads_the_project_readme() -> None:
    engine = DocsEngine()
    assert engine.passages > 0
    assert repr(engine) == f"DocsEngine(folder=None, passages={engine.passages})"
    [top] = engine.search("reference server and the CLI", k=1)
    assert top.path.name == "README.md"
    assert top.title == "README > The reference server and the CLI"
    # The project's docs grow (README, docs/): which page answers may change, not
    # whether the answer is about the question.
    response = ask(engine, "What is a ConfigError?")
    assert response.context is not None and "ConfigError" in response.context
    assert "ConfigError" in response.answer
    assert any(hit.path.parent.name == "docs" for hit in engine.search("notebook", k=5))


# -- through the server ------------------------------------------------------------------


async def test_the_server_answers_from_the_documents(
    start_nexus: ServerFactory, docs: Path
) -> None:
    nexus: Nexus = await start_nexus(api_keys=KEY, engine=DocsEngine(docs))
    async with WebSocketService(nexus.config()) as service:
        response = await service.ask("What should a client do when it is rate_limited?")
        missing = await service.ask("kubernetes")
    assert response.context is not None and response.context.startswith("limits > Quotas: ")
    assert response.answer.startswith("From limits > Quotas: ")
    assert "retry_after" in response.answer
    assert response.usage is not None
    assert response.usage.completion_tokens == count_tokens(response.answer)
    assert missing.context is None and missing.answer.startswith("I found nothing about kubernetes")
