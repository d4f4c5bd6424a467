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
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import io
import json
import os
import re
import secrets
import select
import shlex
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
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


# -- the reference server -------------------------------------------------------------


@dataclass
class Server:
    """``python -m nexus_reactive serve --port 0`` in a subprocess."""

    process: subprocess.Popen[str]
    url: str
    key: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].strip("/"))

    def rewrite(self, source: str) -> str:
        """``source`` with the pages' URL pointed at this server (its port)."""
        return source.replace(DOCS_URL, f"ws://localhost:{self.port}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STARTUP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


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


# -- running a page -------------------------------------------------------------------


class PageRun:
    """Evaluates the blocks of one page; pushed onto its Sybil document."""

    def __init__(self, page: str, server: Server, workdir: Path) -> None:
        self.page = page
        self.server = server
        self.workdir = workdir
        #: Threads the page's blocks started that were still running after them.
        self.started: set[threading.Thread] = set()

    def __call__(self, example: Example) -> None:
        block: Block = example.parsed
        if block.kind == "python":
            self.run_python(example, block)
        elif block.kind == "fragment":
            _compile(block.source, example, top_level_await=True)
            pytest.skip(f"{self.page}:{example.line}: fragment: {block.note}")
        elif block.kind == "include":
            self.check_include(example, block)
        else:
            check_shell(example, block)

    def run(self, example: Example) -> None:
        """Evaluate ``example`` (the page's earlier blocks need not have run)."""
        __tracebackhide__ = True
        example.evaluate()

    def run_python(self, example: Example, block: Block) -> None:
        """Run the block as a program: a fresh namespace, in a thread, bounded."""
        __tracebackhide__ = True
        code = _compile(self.server.rewrite(block.source), example)
        namespace = example.namespace
        namespace.clear()
        namespace["__name__"] = "__main__"
        raised: list[BaseException] = []

        def run() -> None:
            try:
                exec(code, namespace)
            except BaseException as exc:  # re-raised on the test's thread
                raised.append(exc)

        before = set(threading.enumerate())
        worker = threading.Thread(target=run, name=f"docs {self.page}:{example.line}", daemon=True)
        # Files a block writes (a key, a journal) go to the page's own directory.
        with contextlib.chdir(self.workdir):
            worker.start()
            worker.join(BLOCK_TIMEOUT)
        self.started |= set(threading.enumerate()) - before - {worker}
        if worker.is_alive():
            frame = sys._current_frames().get(worker.ident or 0)
            where = "".join(traceback.format_stack(frame)) if frame else "(no frame)"
            pytest.fail(
                f"{self.page}, line {example.line}: the block did not finish within "
                f"{BLOCK_TIMEOUT:.0f}s; it was at:\n{where}",
                pytrace=False,
            )
        if raised:
            raise raised[0]

    def check_include(self, example: Example, block: Block) -> None:
        for path in block.note.split(", "):
            assert (ROOT / path).is_file(), f"{self.page} includes {path}, which does not exist"
            assert path in INCLUDED, (
                f"{self.page} includes {path}: give it a test that runs it, and name that "
                "test in INCLUDED in tests/test_docs_code.py"
            )
        tests = "; ".join(INCLUDED[path] for path in block.note.split(", "))
        pytest.skip(f"{self.page}:{example.line}: includes {block.note}, run by {tests}")

    def finish(self) -> None:
        """Check that the page's programs left no thread behind."""
        deadline = _deadline(STARTUP_TIMEOUT)
        while (left := sorted(t.name for t in self.started if t.is_alive())) and not deadline():
            threading.Event().wait(0.05)
        assert not left, f"{self.page}'s blocks left threads running: {left}"

    def close(self) -> None:
        """Release what the run holds (a kernel, for a notebook page)."""


class NotebookRun(PageRun):
    """The page's Python blocks are the cells of one notebook, run in a real kernel."""

    def __init__(self, page: str, server: Server, workdir: Path) -> None:
        super().__init__(page, server, workdir)
        self.done: dict[int, BaseException | None] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.kernel: contextlib.AsyncExitStack | None = None
        self.client: Any = None
        self.notebook: Any = None

    def run(self, example: Example) -> None:
        """Run the earlier cells first, once each, as a notebook would have."""
        __tracebackhide__ = True
        for earlier in example.document:
            if earlier.start >= example.start:
                break
            if earlier.parsed.kind == "python" and earlier.start not in self.done:
                with contextlib.suppress(Exception, pytest.fail.Exception):
                    earlier.evaluate()
            failed = self.done.get(earlier.start)
            if failed is not None:
                pytest.fail(
                    f"{self.page}: the cell at line {earlier.line} failed, so this one "
                    f"cannot run: {failed}",
                    pytrace=False,
                )
        example.evaluate()

    def run_python(self, example: Example, block: Block) -> None:
        __tracebackhide__ = True
        _compile(block.source, example, top_level_await=True)
        nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
        from nbclient.exceptions import CellExecutionError

        self.done[example.start] = None
        before = set(threading.enumerate())
        try:
            client = self.start_kernel()
            cell = nbformat.v4.new_code_cell(self.server.rewrite(block.source))
            self.notebook.cells.append(cell)
            assert self.loop is not None
            self.loop.run_until_complete(
                client.async_execute_cell(
                    cell, len(self.notebook.cells) - 1, execution_count=len(self.notebook.cells)
                )
            )
        except CellExecutionError as exc:
            self.done[example.start] = exc
            pytest.fail(f"{self.page}, line {example.line}: the cell raised:\n{exc}", pytrace=False)
        except BaseException as exc:
            self.done[example.start] = exc
            raise
        finally:
            self.started |= set(threading.enumerate()) - before
        print(_cell_texts(cell))

    def start_kernel(self) -> Any:
        """The notebook's kernel, started at its first cell."""
        if self.client is not None:
            return self.client
        nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
        nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
        pytest.importorskip("ipykernel", reason="the notebook extra is not installed")
        self.notebook = nbformat.v4.new_notebook()
        client = nbclient.NotebookClient(
            self.notebook,
            kernel_name=_kernelspec(self.workdir),
            timeout=BLOCK_TIMEOUT,
            startup_timeout=BLOCK_TIMEOUT,
            resources={"metadata": {"path": str(self.workdir)}},
        )
        env = {**os.environ, "NEXUS_API_KEY": self.server.key, "PYTHONASYNCIODEBUG": "1"}
        self.loop = asyncio.new_event_loop()
        self.kernel = contextlib.AsyncExitStack()
        stderr = self.kernel.enter_context((self.workdir / "kernel.log").open("w"))
        self.loop.run_until_complete(
            self.kernel.enter_async_context(client.async_setup_kernel(env=env, stderr=stderr))
        )
        self.client = client
        return client

    def close(self) -> None:
        if self.loop is None:
            return
        try:
            if self.kernel is not None:
                self.loop.run_until_complete(self.kernel.aclose())
        finally:
            self.loop.close()
            self.loop = self.kernel = self.client = None

    def finish(self) -> None:
        """Shut the kernel down; nothing leaked in it, and the library logged no error."""
        self.close()
        log = self.workdir / "kernel.log"
        if log.is_file():
            text = log.read_text()
            for problem in ("ResourceWarning", "Task was destroyed", "nexus_reactive"):
                assert problem not in text, f"{self.page}'s kernel logged {problem}:\n{text}"
        super().finish()


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
    monkeypatch.setattr(sys.modules[__name__], "BLOCK_TIMEOUT", 0.1)
    with pytest.raises(pytest.fail.Exception, match="did not finish within"):
        run.run(hanging)


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


def _kernelspec(workdir: Path) -> str:
    """A kernelspec that runs this very interpreter, first on JUPYTER_PATH (so a
    user's own ``python3`` kernel cannot shadow it), in asyncio debug mode with
    ResourceWarning as an error, as the rest of the suite runs."""
    spec = Path(os.environ["JUPYTER_PATH"]) / "kernels" / "nexus-docs"
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-X", "dev", "-W", "error::ResourceWarning"]
    argv += ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "nexus-reactive docs", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return "nexus-docs"


def _cell_texts(cell: Any) -> str:
    """What an executed cell showed: its streams, results and displays (as text)."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.data
            parts.append(str(data.get("text/plain", data.get("text/html", ""))))
    return "\n".join(parts)


def _deadline(seconds: float) -> Callable[[], bool]:
    """A function that says whether ``seconds`` have passed since this call."""
    stop = time.monotonic() + seconds
    return lambda: time.monotonic() >= stop
