"""Every code block of README.md and docs/*.md works, against the real reference server.

Sybil reads the pages. Each fenced block is a test:

- A ```python block is a program a reader can paste into a file and run: it runs in a
  fresh namespace (``__name__ == "__main__"``), in page order, bounded by
  ``BLOCK_TIMEOUT``. The pages say ``ws://localhost:8000``, the URL a reader gets from
  ``nexus-reactive serve --port 8000``; here the reference server runs as that
  command does (``python -m nexus_reactive serve``, on a free port, with a fresh
  ``NEXUS_API_KEY`` in the environment) and each block runs with the port in that URL
  replaced by the server's. The pages themselves are never rewritten.
- docs/notebooks.md is a notebook's cells: its blocks run, in order, as the cells of
  one real Jupyter kernel (top-level ``await``, the last expression displayed).
- A block that cannot run on its own is marked on the line before it, with the
  reason, which the test reports as the skip reason::

      <!-- fragment: a method of an app; examples/app.py is the whole program -->

  It must still compile. A marker with no reason, or not followed by a ```python
  block, fails; so does a Python block fenced as ```py (or ``python3``, ...), which
  would silently escape these tests.
- A block that only includes a file (pymdownx snippets, ``--8<-- "examples/x.py"``)
  shows a file that has a test of its own: ``INCLUDED`` names it. Including a file
  without one fails.
- A ```sh block's ``nexus-reactive`` (or ``python -m nexus_reactive``) command lines
  must parse with the CLI's own parser, its ``make`` targets exist in the Makefile,
  and the extras it ``pip install``s exist in pyproject.toml.

The machinery (parsing the pages, the server, running a page) is in docs_pages.py and
docs_runs.py; the fixtures and the tests are here.
"""

from __future__ import annotations

import os
import re
import secrets
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sybil import Document, Example

from .docs_pages import (
    BLOCK_TIMEOUT,
    DOCUMENTS,
    EXAMPLES,
    NOTEBOOK_PAGES,
    PAGES,
    ROOT,
    STARTUP_TIMEOUT,
    SYBIL,
)
from .docs_runs import NotebookRun, PageRun, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    key = secrets.token_urlsafe(24)
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [sys.executable, "-m", "nexus_reactive", "serve", "--host", "127.0.0.1"]
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [*command, "--port", "0"],
            env={**os.environ, "NEXUS_API_KEY": key},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        match = re.search(r"listening on (ws://\S+)", line)
        if match is None:
            process.kill()
            process.wait()
            pytest.fail(f"the server did not start: {line!r}; its log: {log.read_text()}")
        server = Server(process, match.group(1), key, log)
        try:
            yield server
        finally:
            code = server.stop()
        text = log.read_text()
        assert code == 0, f"the server exited with {code}; its log: {text}"
        # Every program closed its connection (1000); none was left for the shutdown.
        closes = re.findall(r"closed \(code (\d+)\)", text)
        assert set(closes) <= {"1000"}, text
        # asyncio's debug mode (inherited from `make test`) warns of every callback
        # slower than 0.1 s: a loaded machine's, not a program's problem.
        checked = re.sub(r".* WARNING asyncio: Executing <.*> took [\d.]+ seconds\n", "", text)
        for problem in ("Traceback", " ERROR ", " WARNING "):
            assert problem not in checked, text


@pytest.fixture(scope="module")
def pages(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PageRun]]:
    """A run of each page, against ``server``, with its key in ``NEXUS_API_KEY``."""
    runs: dict[str, PageRun] = {}
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NEXUS_API_KEY", server.key)
        # A notebook kernel's files go to the test's own directory, not $HOME.
        jupyter = tmp_path_factory.mktemp("jupyter")
        env.setenv("JUPYTER_PATH", str(jupyter / "data"))
        env.setenv("JUPYTER_RUNTIME_DIR", str(jupyter / "runtime"))
        env.setenv("IPYTHONDIR", str(jupyter / "ipython"))
        try:
            for page, document in DOCUMENTS.items():
                run_class = NotebookRun if page in NOTEBOOK_PAGES else PageRun
                runs[page] = run_class(page, server, tmp_path_factory.mktemp("page"))
                document.push_evaluator(runs[page])
            yield runs
        finally:
            for page, run in runs.items():
                DOCUMENTS[page].pop_evaluator(run)
                run.close()


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize(("page", "example"), EXAMPLES)
def test_block(page: str, example: Example, pages: dict[str, PageRun]) -> None:
    """The block runs (or is a marked fragment, an include, or valid commands)."""
    __tracebackhide__ = True
    pages[page].run(example)


@pytest.mark.parametrize("page", PAGES)
def test_page_leaves_nothing_behind(page: str, pages: dict[str, PageRun]) -> None:
    """After a page's blocks: no thread left running, no kernel left, no leak logged."""
    pages[page].finish()


def test_the_readmes_first_example_prints_what_the_readme_shows(
    pages: dict[str, PageRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's first screen: its first example prints, against the reference
    server, exactly the answer the ```text block after it shows."""
    readme = DOCUMENTS["README.md"]
    first = next(e for e in readme if e.parsed.kind == "python")
    shown = re.match(r"\s*It printed:\s*```text\n(.*?)\n```", readme.text[first.end :], re.DOTALL)
    assert shown is not None, "the README's first example is followed by what it printed"
    pages["README.md"].run(first)
    assert capsys.readouterr().out.rstrip("\n") == shown.group(1)


def test_the_readme_tour_prints_an_answer(
    pages: dict[str, PageRun], capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's tour (the React hook's example) prints the connection's states,
    the server's answer, and its closing line."""
    tour = next(
        e
        for e in DOCUMENTS["README.md"]
        if e.parsed.kind == "python" and "use_websocket(url=" in str(e.parsed.source)
    )
    pages["README.md"].run(tour)
    lines = capsys.readouterr().out.splitlines()
    assert "Status: Connected" in lines, lines
    answers = [line for line in lines if line.strip() and not line.startswith("Status:")]
    assert len(answers) >= 2 and answers[-1] == "True 1", lines


def test_make_demo_runs_the_quickstart(tmp_path: Path) -> None:
    """``make demo`` (examples/demo.py): a fresh server, examples/quickstart.py against
    it, every question answered, exit 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=2 * BLOCK_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("[answer ") == 3, result.stdout
    assert "server stopped (exit code 0)" in result.stdout, result.stdout


def test_the_pages_are_parsed() -> None:
    """Sybil found every page's Python blocks: as many as the fences say."""
    for page, document in DOCUMENTS.items():
        fences = len(re.findall(r"^[ \t]*```python[ \t]*$", document.text, re.MULTILINE))
        found = [e for e in document if e.parsed.kind != "shell"]
        assert len(found) == fences, page


# -- the tests' own checks: what would escape them fails -------------------------------


def _page(tmp_path: Path, text: str) -> Document:
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent(text))
    return SYBIL.parse(page)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<!-- fragment: -->\n```python\nx\n```\n", "needs its reason"),
        ("<!-- fragment: why -->\n\nWords.\n\n```python\nx\n```\n", "line right before"),
        ("```py\nprint(1)\n```\n", "fence Python as ```python"),
    ],
    ids=["fragment without a reason", "marker away from its block", "py fence"],
)
def test_a_page_that_would_escape_the_tests_is_refused(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        _page(tmp_path, text)


def test_a_block_that_does_not_run_fails(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = _page(
        tmp_path,
        """\
        ```python
        raise LookupError("raised by the page")
        ```

        ```python
        import asyncio

        await asyncio.sleep(0)
        ```

        <!-- fragment: a fragment must still compile -->
        ```python
        def half(:
        ```

        ```python
        --8<-- "examples/pipeline.py"
        ```

        ```python
        import threading

        threading.Event().wait(2.0)  # a block that hangs
        ```
        """,
    )
    run = PageRun("page.md", server, tmp_path)
    document.push_evaluator(run)
    raising, awaiting, fragment, include, hanging = document
    with pytest.raises(LookupError, match="raised by the page"):
        run.run(raising)
    with pytest.raises(pytest.fail.Exception, match=r"page.md, line 8: 'await' outside function"):
        run.run(awaiting)
    with pytest.raises(pytest.fail.Exception, match=r"page\.md, line 13: "):
        run.run(fragment)
    with pytest.raises(AssertionError, match=r"examples/pipeline\.py: give it a test"):
        run.run(include)
    monkeypatch.setattr(sys.modules[PageRun.__module__], "BLOCK_TIMEOUT", 0.1)  # where it is read
    with pytest.raises(pytest.fail.Exception, match="did not finish within"):
        run.run(hanging)
