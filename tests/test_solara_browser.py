"""examples/solara_chat.py in a real browser: Debian's Chromium, headless, driven by
Playwright, against the reference server.

The app runs as a user runs it (``solara run``, a subprocess, on a loopback port);
the reference server runs in this process on its own loop thread, so that the test
can stop it, start it again on the same port, and count its open sockets. Nothing
is fetched from outside: the page's front end comes from Solara's asset cache
(``examples/solara_assets.py`` fills what solara-assets lacks) and the app is told
to use a CDN that refuses every connection, so a missing asset fails the test.

Screenshots of each step are saved in the test's ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive.server import EchoEngine, create_app
from nexus_reactive.server.app import STATS_KEY
from nexus_reactive.server.state import ServerStats

from .conftest import KEY
from .waiting import EVENTUALLY, poll

pytest.importorskip("solara", reason="the solara extra is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "solara_chat.py"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: What a browser on this machine needs: no sandbox (root), no GPU, and none of the
#: background traffic that a closed network would refuse (see .ci/run).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: A dead tab's kernel (and so its connection) is culled after this in the test app.
CULL_TIMEOUT = 2.0
#: Starting Solara and loading its page is the slow part on a loaded 2-core machine.
PAGE_LOAD = 3 * EVENTUALLY
WAIT_MS = EVENTUALLY * 1000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="no chromium (Debian's package; .ci/run installs it)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RestartableNexus:
    """The reference server (streaming echo) on a loop thread; stop and start it
    again on the same port, like a server that is restarted."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="test-nexus-server", daemon=True
        )
        self.thread.start()
        self.port = free_port()
        self.runner: web.AppRunner | None = None
        self.app: web.Application | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def stats(self) -> ServerStats:
        assert self.app is not None
        return self.app[STATS_KEY]

    def open_sockets(self) -> int:
        return self.stats.connections_open if self.runner is not None else 0

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=EVENTUALLY)

    async def _start(self) -> None:
        # Words 80 ms apart: an answer streams for about a second, long enough to be seen.
        self.app = create_app(api_keys=KEY, engine=EchoEngine(stream=True, delay=0.08))
        self.runner = web.AppRunner(self.app)
        await self.runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        await web.SockSite(self.runner, sock).start()

    def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            future = asyncio.run_coroutine_threadsafe(runner.cleanup(), self.loop)
            future.result(timeout=EVENTUALLY)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


@pytest.fixture(scope="module")
def nexus() -> Iterator[RestartableNexus]:
    server = RestartableNexus()
    server.start()
    try:
        yield server
    finally:
        server.close()


def _load_assets_helper() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "nexus_solara_assets", ROOT / "examples" / "solara_assets.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def app(nexus: RestartableNexus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``solara run examples/solara_chat.py`` on a free loopback port."""
    assets = _load_assets_helper()
    # Fetched once per machine from the npm registry; the app itself goes to no CDN.
    assets.fill()
    assert assets.missing() == []
    log_path = tmp_path_factory.mktemp("solara") / "app.log"
    port = free_port()
    env = {
        **os.environ,
        "NEXUS_URL": nexus.url,
        "NEXUS_API_KEY": KEY,
        "SOLARA_KERNEL_CULL_TIMEOUT": f"{CULL_TIMEOUT}s",
        "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False",
        # Every asset from the local cache: a miss asks this port, which refuses.
        "SOLARA_ASSETS_CDN": "http://127.0.0.1:9/",
    }
    # Not in asyncio debug mode: Solara's own tab-close path cancels the kernel's cull
    # task from a worker thread (solara/server/kernel_context.py, close()), which debug
    # mode turns into a RuntimeError that aborts the close, and the tab's kernel, with
    # its connection, would then never close. The hook's own threading is checked in
    # debug mode by tests/test_solara_hook.py, in this process.
    env.pop("PYTHONASYNCIODEBUG", None)
    env.pop("PYTHONDEVMODE", None)
    solara_bin = Path(sys.executable).parent / "solara"
    command = [str(solara_bin), "run", str(EXAMPLE), "--production", "--no-open"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"solara exited: {log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        poll(up, timeout=PAGE_LOAD, interval=0.1, message="solara run to serve the page")
        yield type("App", (), {"url": url, "log": log_path, "process": process})
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=EVENTUALLY)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium from Debian with a fresh profile; never a browser download."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 900, "height": 520},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def idle(nexus: RestartableNexus) -> None:
    """Each test starts with no tab connected (an earlier test's tabs have gone)."""
    nexus.start() if nexus.runner is None else None
    poll(lambda: nexus.open_sockets() == 0, message="the earlier tabs' sockets to close")


def open_tab(browser: Any, app: Any) -> Any:
    page = browser.new_page()
    page.goto(app.url, wait_until="domcontentloaded", timeout=PAGE_LOAD * 1000)
    page.wait_for_selector(".nexus-status:text-is('Connected')", timeout=PAGE_LOAD * 1000)
    return page


def ask(page: Any, question: str) -> None:
    page.fill(".nexus-input input", question)
    page.click(".nexus-send")
    page.wait_for_selector(f".nexus-question:text-is('You: {question}')", timeout=WAIT_MS)


def answer_of(question: str) -> str:
    return f".nexus-answer:text-is('Nexus: You asked: {question}')"


def test_page_connects_and_streams_an_answer(
    app: Any, browser: Any, nexus: RestartableNexus, idle: None, tmp_path: Path
) -> None:
    start = time.monotonic()
    page = open_tab(browser, app)
    connected_after = time.monotonic() - start
    assert nexus.open_sockets() == 1
    question = "How does the client stream an answer as the server writes it?"
    ask(page, question)
    # The answer is shown while it is written, then replaced by the final one.
    page.wait_for_selector(".nexus-streaming", timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "streaming.png")
    page.wait_for_selector(answer_of(question), timeout=WAIT_MS)
    assert page.locator(".nexus-streaming").count() == 0
    page.screenshot(path=tmp_path / "answered.png")
    page.click(".nexus-clear")
    page.wait_for_selector(".nexus-question", state="detached", timeout=WAIT_MS)
    page.close()
    print(f"connected {connected_after:.2f}s after the page was opened")


def test_reconnecting_is_shown_and_a_question_asked_meanwhile_is_answered(
    app: Any, browser: Any, nexus: RestartableNexus, idle: None, tmp_path: Path
) -> None:
    page = open_tab(browser, app)
    ask(page, "Before the restart?")
    page.wait_for_selector(answer_of("Before the restart?"), timeout=WAIT_MS)

    nexus.stop()
    page.wait_for_selector(".nexus-status:has-text('Reconnecting')", timeout=WAIT_MS)
    ask(page, "Asked while the server was down?")
    page.wait_for_selector(".nexus-queued", timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "reconnecting.png")

    nexus.start()
    page.wait_for_selector(".nexus-status:text-is('Connected')", timeout=WAIT_MS)
    page.wait_for_selector(answer_of("Asked while the server was down?"), timeout=WAIT_MS)
    page.screenshot(path=tmp_path / "recovered.png")
    page.close()


def test_two_tabs_each_see_only_their_own_answers(
    app: Any, browser: Any, nexus: RestartableNexus, idle: None, tmp_path: Path
) -> None:
    first, second = open_tab(browser, app), open_tab(browser, app)
    poll(lambda: nexus.open_sockets() == 2, message="a socket per tab")
    ask(first, "Question from the first tab")
    ask(second, "Question from the second tab")
    first.wait_for_selector(answer_of("Question from the first tab"), timeout=WAIT_MS)
    second.wait_for_selector(answer_of("Question from the second tab"), timeout=WAIT_MS)
    first.screenshot(path=tmp_path / "first-tab.png")
    second.screenshot(path=tmp_path / "second-tab.png")
    assert "second tab" not in first.inner_text("body")
    assert "first tab" not in second.inner_text("body")
    first.close()
    second.close()


def test_closing_a_tab_closes_its_socket(
    app: Any, browser: Any, nexus: RestartableNexus, idle: None
) -> None:
    staying, leaving = open_tab(browser, app), open_tab(browser, app)
    poll(lambda: nexus.open_sockets() == 2, message="a socket per tab")
    leaving.close(run_before_unload=True)
    poll(lambda: nexus.open_sockets() == 1, message="the closed tab's socket to close")
    ask(staying, "Still here?")
    staying.wait_for_selector(answer_of("Still here?"), timeout=WAIT_MS)
    staying.close()
    poll(lambda: nexus.open_sockets() == 0, message="the last tab's socket to close")


def test_a_browser_that_dies_is_culled_within_the_timeout(
    app: Any, nexus: RestartableNexus, idle: None, tmp_path: Path
) -> None:
    """No tab close at all: the browser is killed. The kernel, and its socket, go
    once the cull timeout has passed."""
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", app.url],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        poll(lambda: nexus.open_sockets() == 1, timeout=PAGE_LOAD, message="the tab to connect")
    finally:
        os.killpg(browser.pid, signal.SIGKILL)
        browser.wait()
    killed = time.monotonic()
    poll(lambda: nexus.open_sockets() == 0, message="the dead tab's socket to close")
    assert time.monotonic() - killed >= CULL_TIMEOUT * 0.5  # culled, not closed by the tab


def test_the_app_logged_no_error_of_ours(app: Any) -> None:
    """Run last: no traceback through the library in the app's log, all along."""
    log = app.log.read_text(errors="replace")
    assert "Non-thread-safe operation" not in log
    assert "nexus_reactive" not in log or "Traceback" not in log, log[-5000:]
