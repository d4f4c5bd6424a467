"""examples/tk_chat.py on a private X display (Xvfb), against the real reference
server.

The server runs on its own event loop in a background thread; Tk runs its real
main loop on the test's thread. It must be the real ``mainloop()``: a Tk call from
the store's loop thread (every ``TkinterScheduler`` emission is one) waits for the
Tk thread to be inside it. The test's steps run as Tk callbacks, each once the
condition before it holds on screen, under one deadline.
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive.server import create_app
from nexus_reactive.server.app import STATS_KEY
from nexus_reactive.server.state import ServerStats

from .conftest import KEY
from .waiting import EVENTUALLY, poll
from .xvfb import virtual_display, xvfb_path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tk_chat.py"

#: A test script yields conditions; it resumes once the condition it yielded holds.
Script = Generator[Callable[[], bool], None, None]


@pytest.fixture(scope="module")
def tk_chat() -> ModuleType:
    """The example, imported from its file (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("nexus_tk_chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh Xvfb display, set as ``DISPLAY`` for the test."""
    xvfb_path()  # skip early, before anything else starts
    with virtual_display() as name:
        monkeypatch.setenv("DISPLAY", name)
        yield name


class ThreadedNexus:
    """The reference server on its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="test-nexus-server", daemon=True
        )
        self.app = create_app(api_keys=KEY)
        self.runner = web.AppRunner(self.app)
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def stats(self) -> ServerStats:
        return self.app[STATS_KEY]

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=EVENTUALLY)

    async def _start(self) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await self.runner.setup()
        await web.SockSite(self.runner, sock).start()

    def stop(self) -> None:
        try:
            future = asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop)
            future.result(timeout=EVENTUALLY)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


@pytest.fixture
def threaded_nexus() -> Iterator[ThreadedNexus]:
    server = ThreadedNexus()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def drive(root: Any, script: Script, timeout: float = EVENTUALLY) -> None:
    """Run Tk's main loop, stepping ``script`` as its conditions come true.

    Returns once the main loop ends (the last window was destroyed). Raises the
    script's own error, or ``TimeoutError`` naming the condition still unmet.
    """
    deadline = time.monotonic() + timeout
    failures: list[BaseException] = []
    condition = next(script)

    def poll() -> None:
        nonlocal condition
        try:
            while condition():
                condition = next(script)
        except StopIteration:
            return  # the script is done; the main loop ends when the window goes
        except BaseException as exc:  # reported after the loop, not lost in Tk
            failures.append(exc)
            root.quit()
            return
        if time.monotonic() > deadline:
            failures.append(TimeoutError(f"not met within {timeout}s: {condition.__doc__}"))
            root.quit()
            return
        root.after(10, poll)

    root.after(0, poll)
    root.mainloop()
    if failures:
        raise failures[0]


def condition(doc: str, check: Callable[[], bool]) -> Callable[[], bool]:
    """``check``, described by ``doc`` in a timeout's message."""
    check.__doc__ = doc
    return check


#: A question long enough that its echoed answer needs several lines of the window.
LONG_QUESTION = "How does the client reconnect " + "after the server goes away " * 8 + "?"


def test_tk_chat_connects_asks_and_closes_cleanly(
    tk_chat: ModuleType, display: str, threaded_nexus: ThreadedNexus
) -> None:
    import tkinter as tk

    root = tk.Tk()
    root.geometry("640x480")
    chat = tk_chat.TkChat(root, threaded_nexus.url, KEY)
    seen: dict[str, Any] = {}

    def script() -> Script:
        yield condition("status Connected", lambda: chat.status["text"] == "Connected")
        seen["status colour"] = chat.status["fg"]
        # The entry has the focus from the start: typing and Enter send, no click.
        # (A key event goes where the focus is: under load the display may give the
        # mapped window its focus a moment after the status changed.)
        yield condition("the entry has the focus", lambda: root.focus_get() is chat.entry)
        seen["focus"] = root.focus_get()
        chat.entry.insert(0, "What is Nexus?")
        chat.entry.event_generate("<Return>")
        seen["after send"] = chat.transcript()
        yield condition(
            "the answer is shown",
            lambda: "Nexus: You asked: What is Nexus?" in chat.transcript(),
        )
        seen["answered"] = chat.transcript()
        seen["entry"] = chat.entry.get()
        chat.entry.insert(0, LONG_QUESTION)
        chat.send_button.invoke()
        yield condition(
            "the long answer is shown",
            lambda: f"Nexus: You asked: {LONG_QUESTION}" in chat.transcript(),
        )
        root.update_idletasks()
        text = chat.conversation
        seen["lines"] = int(text.index("end-1c").split(".")[0])
        seen["display lines"] = text.count("1.0", "end", "displaylines")[0]
        # What the window manager's close button does.
        root.tk.call(root.protocol("WM_DELETE_WINDOW"))
        yield condition("the window closed", lambda: chat.closed)

    try:
        drive(root, script())
    except TimeoutError as exc:  # what the store holds, to tell a lost delivery from a lost ask
        messages = chat.store.messages
        exc.add_note(
            f"state {chat.store.state.value!r}; history {list(messages.value)!r}; "
            f"deliveries pending on Tk: {getattr(messages, 'pending', '?')}; "
            f"shown {chat.transcript()!r}"
        )
        raise
    finally:
        if not chat.closed:  # a failed script: still release the store and window
            chat.store.close()
            root.destroy()

    assert seen["status colour"] == tk_chat.COLOURS["connected"]
    assert seen["focus"] is chat.entry
    assert seen["after send"] == ["You: What is Nexus?", "… waiting for the answer"]
    assert seen["answered"] == ["You: What is Nexus?", "Nexus: You asked: What is Nexus?"]
    assert seen["entry"] == ""
    # Four logical lines; the long question and its answer wrap onto more lines than that.
    assert seen["lines"] == 4
    assert seen["display lines"] > seen["lines"] + 2
    assert [t.name for t in threading.enumerate() if t.name == "nexus-reactive-loop"] == []
    poll(lambda: threaded_nexus.stats.connections_open == 0, message="the socket to close")
