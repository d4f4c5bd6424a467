"""examples/notebook.ipynb, executed end to end in a real ipykernel.

The reference server runs as a subprocess (``python -m nexus_reactive serve --port
0 --engine echo``), the notebook runs in a kernel on this interpreter with the server's URL and
key in its environment, and the test reads the cells' outputs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed")

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "notebook.ipynb"
CELL_TIMEOUT = 60  # seconds, per cell
STARTUP_TIMEOUT = 20  # seconds, for the server's startup line


class Server:
    """The reference server in a subprocess."""

    def __init__(self, process: subprocess.Popen[str], url: str, key: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.key = key
        self.log = log

    def stop(self) -> int:
        """SIGTERM, and wait for the exit; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        assert self.process.returncode is not None
        return self.process.returncode


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    key = secrets.token_urlsafe(24)
    log = tmp_path / "server.log"
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            # The echo engine's answers ("You asked: ...") are what the test checks.
            [sys.executable, "-m", "nexus_reactive", "serve", "--port", "0", "--engine", "echo"],
            env={**os.environ, "NEXUS_API_KEY": key},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as process,
    ):
        server = None
        try:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            match = re.search(r"listening on (ws://\S+)", line)
            assert match, f"no startup line from the server: {line!r}; log: {log.read_text()}"
            server = Server(process, match.group(1), key, log)
            yield server
        finally:
            if server is None:
                process.kill()
            else:
                server.stop()


@pytest.fixture
def kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec named ``python3`` that runs this very interpreter.

    It comes first on JUPYTER_PATH, so a user's own ``python3`` kernel (another
    Python, another environment) cannot shadow it. The kernel runs in asyncio debug
    mode with ResourceWarning as an error, as the rest of the suite does.
    """
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-X", "dev", "-W", "error::ResourceWarning"]
    argv += ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": "nexus-reactive tests", "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # Connection files and IPython's profile go to the test's own directory, not $HOME.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    return "python3"


async def test_the_notebook_runs_end_to_end(
    server: Server, kernel_name: str, tmp_path: Path
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT,
        startup_timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    env = {
        **os.environ,
        "NEXUS_URL": server.url,
        "NEXUS_API_KEY": server.key,
        "PYTHONASYNCIODEBUG": "1",
    }
    kernel_log = tmp_path / "kernel.log"
    with kernel_log.open("w") as kernel_stderr:
        # A failing cell raises CellExecutionError with its traceback.
        await client.async_execute(env=env, stderr=kernel_stderr)

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "a cell did not run"
    outputs = [_texts(cell) for cell in code]
    everything = "\n".join(outputs)

    assert "Status: Connected" in everything
    assert "Sync status: Connected" in everything
    store_html = _output_of(code, "store = use_websocket(", "text/html")
    assert "<b>WebSocketStore</b>" in store_html and "Connected" in store_html
    for question in ("What is Nexus?", "How does reconnection work?"):
        assert f"{question} -> You asked: {question} (" in everything
    assert "You asked: Can I send without waiting?" in everything
    assert "You asked: And without await?" in everything

    # The history: the three answers of the async store, as an HTML table.
    history = _output_of(code, "messages.value", "text/html")
    assert "3 messages" in history and history.count("You asked:") == 3

    # The live view was updated in place until the store closed.
    live = _output_of(code, "view = store.display()", "text/html")
    assert "<b>WebSocketStore</b>" in live and "Closed" in live and "3 messages" in live

    closed = _output_of(code, "await store.close()", "text/html")
    assert "Closed" in closed

    assert server.key not in everything  # a key never shows in an output

    # Nothing leaked in the kernel either (it ran in asyncio debug mode, with
    # ResourceWarning as an error), and the library logged no error there. (The
    # log may hold ipykernel's own complaints, e.g. about its shutdown in debug mode.)
    log = kernel_log.read_text()
    for problem in ("ResourceWarning", "Task was destroyed", "nexus_reactive", "nexus-reactive"):
        assert problem not in log, log

    # The server stops cleanly, and the notebook's connections had closed.
    assert server.stop() == 0
    assert server.process.poll() is not None


def _texts(cell: Any) -> str:
    """Every text an executed cell showed: streams, results, displays (all formats)."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.extend(str(value) for value in output.data.values())
    return "\n".join(parts)


def _output_of(cells: list[Any], code: str, mime: str) -> str:
    """The ``mime`` output of the first code cell whose source contains ``code``."""
    for cell in cells:
        if code in cell.source:
            for output in cell.outputs:
                if mime in output.get("data", {}):
                    return str(output.data[mime])
            raise AssertionError(f"the cell with {code!r} showed no {mime}: {cell.outputs}")
    raise AssertionError(f"no cell contains {code!r}")


def test_the_committed_notebook_shows_a_real_run() -> None:
    """examples/notebook.ipynb is committed with its outputs (``make screenshots`` runs
    it against the reference server), so a reader sees what each cell gives, and those
    outputs hold no key and no path of the machine that ran it."""
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1))
    assert all(cell.outputs for cell in code[1:]), "a cell after the imports shows nothing"
    everything = "\n".join(_texts(cell) for cell in code)
    assert "Status: Connected" in everything and "Sync status: Connected" in everything
    live = _output_of(code, "view = store.display()", "text/html")
    assert "<b>WebSocketStore</b>" in live and "3 messages" in live
    assert not re.search(r"(/home/|/root/|/tmp/|/work/|/Users/|[A-Z]:\\\\)", everything)
    # No key: a token_urlsafe-like run of 32+ characters, mixing cases and digits.
    tokens = re.findall(r"(?<![\w-])[A-Za-z0-9_-]{32,}(?![\w-])", everything)
    keys = [
        t
        for t in tokens
        if re.search(r"\d", t) and re.search(r"[a-z]", t) and re.search(r"[A-Z]", t)
    ]
    assert keys == []
    assert all("execution" not in cell.metadata for cell in code)  # no timings
