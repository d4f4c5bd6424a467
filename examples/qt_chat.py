"""A small Qt chat window over ``use_websocket_sync``, with PySide6 (the ``qt`` extra).

The store runs its event loop in a background thread; ``GuiThreadScheduler`` delivers
every ``state`` and ``messages`` emission on Qt's GUI thread, so the handlers below may
touch widgets directly. Answers wrap at word boundaries as the window is resized, the
entry has the keyboard focus from the start, Enter sends, and the status line says how
the connection is.

    pip install 'nexus-reactive[qt]'
    NEXUS_API_KEY=... python examples/qt_chat.py [--url ws://localhost:8000]
"""

from __future__ import annotations

import argparse
import html
import sys
from typing import Any, TypeVar

from PySide6 import QtCore, QtGui, QtWidgets
from reactivex import abc, typing
from reactivex.disposable import CompositeDisposable, Disposable, SingleAssignmentDisposable
from reactivex.scheduler.mainloop import QtScheduler

from nexus_reactive import (
    ConnectionState,
    ErrorMessage,
    History,
    HistoryItem,
    PartialResponse,
    Phase,
    ResponseMessage,
    use_websocket_sync,
)

_T = TypeVar("_T")

#: The status line's colour for each kind of state.
COLOURS = {"connected": "#1b7f3b", "trying": "#a15c00", "failed": "#b3261e", "idle": "#555555"}


class _GuiThreadCall(QtCore.QObject):
    """Lives on the GUI thread; a signal emitted from any thread starts a timer there."""

    call = QtCore.Signal(int, object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._start)

    @QtCore.Slot(int, object)
    def _start(self, msecs: int, invoke: Any) -> None:
        QtCore.QTimer.singleShot(msecs, invoke)


class GuiThreadScheduler(QtScheduler):
    """reactivex's ``QtScheduler``, callable from any thread.

    ``QtScheduler`` starts a ``QTimer`` in the calling thread, and the store calls its
    scheduler from its own loop thread, which runs no Qt event loop: the timer would
    never fire. This one hands the timer to the GUI thread with a queued signal.
    Create it on the GUI thread, after the ``QApplication``.
    """

    def __init__(self) -> None:
        super().__init__(QtCore)
        self._gui = _GuiThreadCall()

    def schedule_relative(
        self,
        duetime: typing.RelativeTime,
        action: typing.ScheduledAction[_T],
        state: _T | None = None,
    ) -> abc.DisposableBase:
        msecs = max(0, int(self.to_seconds(duetime) * 1000.0))
        assigned = SingleAssignmentDisposable()
        cancelled = False

        def invoke() -> None:
            if not cancelled:
                assigned.disposable = action(self, state)

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True

        self._gui.call.emit(msecs, invoke)
        return CompositeDisposable(assigned, Disposable(cancel))


def describe(state: ConnectionState) -> str:
    """The connection state in words, for the status line."""
    if state.connected:
        return "Connected"
    if state.failed:
        return f"Failed: {state.error}"
    if state.phase is Phase.WAITING:
        return f"Reconnecting (attempt {state.attempt}, retry in {state.retry_in or 0:.1f}s)"
    if state.reconnecting:
        return f"Reconnecting (attempt {state.attempt})"
    return str(state.phase.value).capitalize()


def colour(state: ConnectionState) -> str:
    """The status line's colour: green connected, amber trying, red failed."""
    if state.connected:
        return COLOURS["connected"]
    if state.failed:
        return COLOURS["failed"]
    if state.reconnecting or state.phase in (Phase.CONNECTING, Phase.WAITING):
        return COLOURS["trying"]
    return COLOURS["idle"]


class QtChat(QtWidgets.QWidget):
    """A chat window: a status line, the conversation, an entry and a Send button.

    Args:
        url: the server's ``ws://`` or ``wss://`` URL.
        api_key: the API key (``None``: the ``NEXUS_API_KEY`` environment variable).
    """

    def __init__(self, url: str, api_key: str | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Nexus chat")
        self.resize(640, 480)
        self.status = QtWidgets.QLabel("Starting")
        # Read-only rich text that wraps at word boundaries to the widget's width.
        self.conversation = QtWidgets.QTextBrowser()
        self.conversation.setLineWrapMode(QtWidgets.QTextEdit.LineWrapMode.WidgetWidth)
        self.conversation.setWordWrapMode(QtGui.QTextOption.WrapMode.WordWrap)
        self.entry = QtWidgets.QLineEdit()
        self.entry.setPlaceholderText("Ask a question, then press Enter")
        self.entry.returnPressed.connect(self.send)
        self.send_button = QtWidgets.QPushButton("Send")
        self.send_button.clicked.connect(self.send)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.entry)
        row.addWidget(self.send_button)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.conversation, stretch=1)
        layout.addLayout(row)
        self.entry.setFocus()  # type at once, no click needed
        self.closed = False
        self._questions: dict[str, str] = {}  # ask id -> question, in asking order
        self._replies: dict[str, tuple[str, str]] = {}  # ask id -> (what to show, colour)
        self._set_status("Starting", COLOURS["idle"])

        self.store = use_websocket_sync(url=url, api_key=api_key, scheduler=GuiThreadScheduler())
        self._subscriptions = [
            self.store.state.subscribe(self._on_state),
            self.store.messages.subscribe(self._on_messages),
        ]

    def send(self) -> None:
        """Ask what the entry holds; the library queues it while disconnected."""
        question = self.entry.text().strip()
        if not question or self.closed:
            return
        self.entry.clear()
        self._questions[self.store.send_message(question)] = question
        self._redraw()

    def transcript(self) -> list[str]:
        """The conversation as shown, a line per question or answer."""
        return self.conversation.toPlainText().splitlines()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        """Close the store with the window. Emissions reach Qt through a queued signal,
        so the store's thread never waits for this one and closing here cannot block."""
        if not self.closed:
            self.closed = True
            for subscription in self._subscriptions:
                subscription.dispose()
            self.store.close()
        event.accept()

    def _set_status(self, text: str, fg: str) -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {fg}; font-weight: bold;")

    def _on_state(self, state: ConnectionState) -> None:
        if not self.closed:
            self._set_status(describe(state), colour(state))

    def _on_messages(self, history: History[HistoryItem]) -> None:
        if self.closed:
            return
        for item in history:
            if isinstance(item, ResponseMessage):
                self._replies[item.id] = (f"Nexus: {item.payload.answer}", "")
            elif isinstance(item, PartialResponse):
                self._replies[item.id] = (f"Nexus (streaming): {item.payload.answer}", "")
            elif isinstance(item, ErrorMessage):
                text = f"Error ({item.payload.code}): {item.payload.message}"
                self._replies[item.id] = (text, COLOURS["failed"])
        self._redraw()

    def _redraw(self) -> None:
        paragraphs = []
        for ask_id, question in self._questions.items():
            reply, fg = self._replies.get(ask_id, ("… waiting for the answer", "#777777"))
            style = f' style="color: {fg}"' if fg else ""
            paragraphs.append(f"<p><b>You: {html.escape(question)}</b><br>")
            paragraphs.append(f"<span{style}>{html.escape(reply)}</span></p>")
        self.conversation.setHtml("".join(paragraphs))
        bar = self.conversation.verticalScrollBar()
        bar.setValue(bar.maximum())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8000")
    parser.add_argument("--api-key", default=None, help="default: $NEXUS_API_KEY")
    args = parser.parse_args()
    app = QtWidgets.QApplication(sys.argv[:1])
    chat = QtChat(args.url, args.api_key)
    chat.show()
    sys.exit(app.exec())


if __name__ == "__main__":
    main()
