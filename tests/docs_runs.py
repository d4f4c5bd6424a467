"""How tests/test_docs_code.py runs the pages: the reference server as the pages' readers
start it, and a run of each page's blocks (a notebook page's as the cells of one kernel)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sybil import Example

from .docs_pages import (
    BLOCK_TIMEOUT,
    DOCS_URL,
    INCLUDED,
    ROOT,
    STARTUP_TIMEOUT,
    Block,
    _compile,
    check_shell,
)

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
