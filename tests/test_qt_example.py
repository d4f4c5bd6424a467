"""examples/qt_chat.py on a private X display (Xvfb), against the real reference server.

Like tests/test_tk_example.py, but the window runs in a subprocess
(tests/qt_driver.py): a ``QApplication`` is one per process and would outlive the
test's display. Qt draws through its ``xcb`` platform on Xvfb; where Qt's X libraries
are missing it falls back to its ``offscreen`` platform, which runs the same widgets
without a display, and the test says which one ran.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import KEY
from .test_tk_example import ThreadedNexus
from .waiting import poll
from .xvfb import virtual_display

ROOT = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 60  # seconds: the driver's own deadline is 20 s
#: Qt's own words when a platform plugin cannot be loaded (missing X libraries).
_NO_PLUGIN = "Could not load the Qt platform plugin"

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("PySide6") is None,
    reason="PySide6 is not installed: the qt extra (pip install 'nexus-reactive[qt]')",
)


@pytest.fixture
def threaded_nexus() -> Iterator[ThreadedNexus]:
    server = ThreadedNexus()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _drive(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.qt_driver", url, KEY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def _qt_chat(url: str) -> dict[str, object]:
    """Run the driver on Xvfb (xcb); on Qt's offscreen platform where xcb cannot load."""
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb"}
    env.pop("WAYLAND_DISPLAY", None)
    try:
        with virtual_display() as display:
            result = _drive(url, {**env, "DISPLAY": display})
    except pytest.skip.Exception:  # no Xvfb
        result = None
    if result is None or (result.returncode != 0 and _NO_PLUGIN in result.stderr):
        result = _drive(url, {**env, "QT_QPA_PLATFORM": "offscreen"})
        if result.returncode != 0 and _NO_PLUGIN in result.stderr:
            pytest.skip(f"neither Qt's xcb nor offscreen platform loads: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    seen: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def test_qt_chat_connects_asks_and_closes_cleanly(threaded_nexus: ThreadedNexus) -> None:
    seen = _qt_chat(threaded_nexus.url)
    print("Qt platform:", seen["platform"])

    assert seen["failures"] == []
    assert "#1b7f3b" in str(seen["status style"])  # green: connected
    assert seen["focus"] is True  # the entry has the focus from the start
    # Typed, then Enter: sent, and shown at once with a placeholder for the answer.
    assert seen["after send"] == ["You: What is Nexus?", "… waiting for the answer"]
    assert seen["answered"] == ["You: What is Nexus?", "Nexus: You asked: What is Nexus?"]
    assert seen["entry"] == ""
    # Two paragraphs; the long question and its answer wrap, never scroll sideways.
    assert seen["lines"] == 2
    assert isinstance(seen["display lines"], int) and seen["display lines"] > 4 + 2
    assert seen["horizontal scroll"] == 0
    assert seen["loop threads"] == []
    poll(lambda: threaded_nexus.stats.connections_open == 0, message="the socket to close")
