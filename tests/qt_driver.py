"""Drives examples/qt_chat.py in a process of its own, for tests/test_qt_example.py.

A ``QApplication`` is one per process and outlives the test's X display, so the test
runs this module as a subprocess (``python -m tests.qt_driver URL KEY``) on the display
it made. The steps run as Qt timer callbacks, each once the condition before it holds
on screen, under one deadline; what was seen is printed as one JSON line.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from types import ModuleType
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "qt_chat.py"
TIMEOUT = 20.0  # seconds, for the whole script
#: A question long enough that its echoed answer needs several lines of the window.
LONG_QUESTION = "How does the client reconnect " + "after the server goes away " * 8 + "?"

Script = Generator[Callable[[], bool], None, None]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nexus_qt_chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def display_lines(document: Any) -> int:
    """How many lines the text takes on screen, wrapped lines counted."""
    lines = 0
    block = document.begin()
    while block.isValid():
        lines += block.layout().lineCount()
        block = block.next()
    return lines


def main(url: str, key: str) -> int:
    from PySide6 import QtCore, QtWidgets
    from PySide6.QtTest import QTest

    example = load_example()
    app = QtWidgets.QApplication([sys.argv[0]])
    chat = example.QtChat(url, key)
    chat.show()
    chat.activateWindow()
    seen: dict[str, Any] = {"platform": app.platformName()}

    def script() -> Script:
        yield lambda: chat.status.text() == "Connected"
        seen["status style"] = chat.status.styleSheet()
        seen["focus"] = chat.entry.hasFocus()
        QTest.keyClicks(chat.entry, "What is Nexus?")
        QTest.keyClick(chat.entry, QtCore.Qt.Key.Key_Return)
        seen["after send"] = chat.transcript()
        yield lambda: "Nexus: You asked: What is Nexus?" in chat.transcript()
        seen["answered"] = chat.transcript()
        seen["entry"] = chat.entry.text()
        chat.entry.setText(LONG_QUESTION)
        chat.send_button.click()
        yield lambda: f"Nexus: You asked: {LONG_QUESTION}" in chat.transcript()
        app.processEvents()
        document = chat.conversation.document()
        seen["lines"] = document.blockCount()
        seen["display lines"] = display_lines(document)
        seen["horizontal scroll"] = chat.conversation.horizontalScrollBar().maximum()
        chat.close()  # what the window manager's close button does
        yield lambda: chat.closed

    steps = script()
    condition = next(steps)
    deadline = time.monotonic() + TIMEOUT
    failures: list[str] = []

    def poll() -> None:
        nonlocal condition
        try:
            while condition():
                condition = next(steps)
        except StopIteration:
            app.quit()
            return
        if time.monotonic() > deadline:
            failures.append(f"timed out; status {chat.status.text()!r}, {chat.transcript()}")
            chat.close()
            app.quit()
            return
        QtCore.QTimer.singleShot(10, poll)

    QtCore.QTimer.singleShot(0, poll)
    app.exec()
    seen["failures"] = failures
    seen["loop threads"] = [
        t.name for t in threading.enumerate() if t.name == "nexus-reactive-loop"
    ]
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
