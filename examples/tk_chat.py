"""A small Tkinter chat window over ``use_websocket_sync``.

The store runs its event loop in a background thread; ``TkinterScheduler(root)``
delivers every ``state`` and ``messages`` emission on the Tk thread, so the
handlers below may touch widgets directly. Answers wrap at word boundaries as the
window is resized, the entry has the keyboard focus from the start, Enter sends,
and the status line says how the connection is.

    NEXUS_API_KEY=... python examples/tk_chat.py [--url ws://localhost:8000]
"""

from __future__ import annotations

import argparse
import threading
import tkinter as tk
from tkinter import font as tkfont

from reactivex.scheduler.mainloop import TkinterScheduler

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

#: The status line's colour for each kind of state.
COLOURS = {"connected": "#1b7f3b", "trying": "#a15c00", "failed": "#b3261e", "idle": "#555555"}


def describe(state: ConnectionState) -> str:
    """The connection state in words, for the status label."""
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


class TkChat:
    """A chat window: a status line, the conversation, an entry and a Send button.

    Args:
        root: the Tk root window; this class owns it and destroys it on close.
        url: the server's ``ws://`` or ``wss://`` URL.
        api_key: the API key (``None``: the ``NEXUS_API_KEY`` environment variable).
    """

    def __init__(self, root: tk.Tk, url: str, api_key: str | None = None) -> None:
        self.root = root
        root.title("Nexus chat")
        self.status = tk.Label(root, text="Starting", anchor="w", fg=COLOURS["idle"])
        self.status.pack(fill="x", padx=6, pady=4)
        # Pack the entry row before the conversation so that it keeps its place at the
        # bottom when the window is made small.
        row = tk.Frame(root)
        row.pack(side="bottom", fill="x", padx=6, pady=6)
        self.entry = tk.Entry(row)
        self.entry.pack(side="left", fill="x", expand=True)
        self.entry.bind("<Return>", lambda _event: self.send())
        self.send_button = tk.Button(row, text="Send", command=self.send)
        self.send_button.pack(side="right")
        frame = tk.Frame(root)
        frame.pack(fill="both", expand=True, padx=6)
        scrollbar = tk.Scrollbar(frame)
        scrollbar.pack(side="right", fill="y")
        # A read-only Text that wraps at word boundaries: a long answer is shown whole,
        # and rewraps when the window is resized.
        self.conversation = tk.Text(
            frame,
            width=80,
            height=20,
            wrap="word",
            font="TkDefaultFont",
            state="disabled",
            yscrollcommand=scrollbar.set,
            padx=4,
            pady=4,
        )
        self.conversation.pack(side="left", fill="both", expand=True)
        scrollbar.config(command=self.conversation.yview)
        bold = tkfont.nametofont("TkDefaultFont").copy()
        bold.configure(weight="bold")
        self.conversation.tag_configure("you", font=bold)
        self.conversation.tag_configure("waiting", foreground="#777777")
        self.conversation.tag_configure("error", foreground=COLOURS["failed"])
        self.conversation.tag_configure("answer", spacing3=8)
        self.entry.focus_set()  # type at once, no click needed
        self.closed = False
        self._closing = False
        self._questions: dict[str, str] = {}  # ask id -> question, in asking order
        self._replies: dict[str, tuple[str, str]] = {}  # ask id -> (what to show, its tag)

        self.store = use_websocket_sync(url=url, api_key=api_key, scheduler=TkinterScheduler(root))
        self._subscriptions = [
            self.store.state.subscribe(self._on_state),
            self.store.messages.subscribe(self._on_messages),
        ]
        root.protocol("WM_DELETE_WINDOW", self.close)

    def send(self) -> None:
        """Ask what the entry holds; the library queues it while disconnected."""
        question = self.entry.get().strip()
        if not question or self._closing:
            return
        self.entry.delete(0, "end")
        self._questions[self.store.send_message(question)] = question
        self._redraw()

    def close(self) -> None:
        """Close the store, then the window. The Tk loop keeps turning meanwhile."""
        if self._closing:
            return
        self._closing = True
        for subscription in self._subscriptions:
            subscription.dispose()
        self.status.config(text="Closing")
        # Not on this thread: while the store closes, its loop thread may still be
        # handing an emission to Tk, which waits for this thread to run the Tk loop.
        closer = threading.Thread(target=self.store.close, name="tk-chat-close")
        closer.start()
        self._destroy_when_done(closer)

    def _destroy_when_done(self, closer: threading.Thread) -> None:
        if closer.is_alive():
            self.root.after(10, self._destroy_when_done, closer)
            return
        closer.join()
        self.closed = True
        self.root.destroy()

    def transcript(self) -> list[str]:
        """The conversation as shown, a line per question or answer."""
        return self.conversation.get("1.0", "end-1c").splitlines()

    def _on_state(self, state: ConnectionState) -> None:
        if not self._closing:
            self.status.config(text=describe(state), fg=colour(state))

    def _on_messages(self, history: History[HistoryItem]) -> None:
        if self._closing:
            return
        for item in history:
            if isinstance(item, ResponseMessage):
                self._replies[item.id] = (f"Nexus: {item.payload.answer}", "answer")
            elif isinstance(item, PartialResponse):
                self._replies[item.id] = (f"Nexus (streaming): {item.payload.answer}", "answer")
            elif isinstance(item, ErrorMessage):
                text = f"Error ({item.payload.code}): {item.payload.message}"
                self._replies[item.id] = (text, "error")
        self._redraw()

    def _redraw(self) -> None:
        text = self.conversation
        text.config(state="normal")
        text.delete("1.0", "end")
        for ask_id, question in self._questions.items():
            text.insert("end", f"You: {question}\n", "you")
            reply, tag = self._replies.get(ask_id, ("… waiting for the answer", "waiting"))
            text.insert("end", f"{reply}\n", tag)
        text.delete("end-1c")  # the last newline: no empty line under the last answer
        text.config(state="disabled")
        text.see("end")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8000")
    parser.add_argument("--api-key", default=None, help="default: $NEXUS_API_KEY")
    args = parser.parse_args()
    root = tk.Tk()
    TkChat(root, args.url, args.api_key)
    root.mainloop()


if __name__ == "__main__":
    main()
