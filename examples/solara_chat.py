"""A Solara chat over ``nexus_reactive.solara.use_websocket``: one connection per tab.

The status line says how the connection is (it shows "Reconnecting" the moment the
server goes away), answers stream in as they are written, a question asked while
disconnected waits in the outbox and is answered after the reconnect, and Clear
empties the conversation.

    make demo-solara        # starts the reference server, then this app
    NEXUS_URL=ws://localhost:8000 NEXUS_API_KEY=... solara run examples/solara_chat.py

It also runs in a notebook cell: ``from solara_chat import Page; Page()``.
"""

from __future__ import annotations

import os

import solara

from nexus_reactive import (
    ConnectionState,
    ErrorMessage,
    PartialResponse,
    Phase,
    ResponseMessage,
    WebSocketConfig,
)
from nexus_reactive.solara import use_websocket

#: How long a tab's kernel, and so its connection, outlives a browser that went away
#: without closing it (a crash, a laptop lid, a lost network). Solara's default is 24
#: hours; SOLARA_KERNEL_CULL_TIMEOUT set in the environment wins over this.
CULL_TIMEOUT = "60s"

if "SOLARA_KERNEL_CULL_TIMEOUT" not in os.environ:
    try:  # only under `solara run`: the server reads its settings at start-up
        import solara.server.settings as _server_settings

        _server_settings.kernel.cull_timeout = CULL_TIMEOUT
    except ImportError:  # pragma: no cover - solara without its server
        pass

#: The connection's settings: a chat retries forever, at most 5 seconds apart.
CONFIG = WebSocketConfig(
    url=os.environ.get("NEXUS_URL", "ws://localhost:8000"),
    reconnect_interval=0.5,
    max_reconnect_interval=5.0,
    max_reconnect_attempts=None,
)

#: The status line's colour for each kind of state (as in the Tk and Qt examples).
COLOURS = {"connected": "#1b7f3b", "trying": "#a15c00", "failed": "#b3261e", "idle": "#555555"}


def describe(state: ConnectionState) -> tuple[str, str]:
    """The connection state in words, and its colour."""
    if state.connected:
        return "Connected", COLOURS["connected"]
    if state.failed:
        return f"Failed: {state.error}", COLOURS["failed"]
    if state.reconnecting or state.phase is Phase.WAITING:
        return f"Reconnecting (attempt {state.attempt})", COLOURS["trying"]
    if state.phase in (Phase.CONNECTING, Phase.AUTHENTICATING):
        return "Connecting", COLOURS["trying"]
    return str(state.phase.value).capitalize(), COLOURS["idle"]


@solara.component
def Page() -> None:
    state, messages, send_message, clear_messages = use_websocket(CONFIG)
    # This tab's questions by ask id, in asking order; the answers come in `messages`.
    questions, set_questions = solara.use_state({})
    text, set_text = solara.use_state("")

    def send() -> None:
        question = text.strip()
        if question:
            set_questions({**questions, send_message(question): question})
            set_text("")

    def clear() -> None:
        clear_messages()
        set_questions({})

    replies: dict[str, tuple[str, str]] = {}  # ask id -> (what to show, its CSS class)
    for item in messages:
        if isinstance(item, ResponseMessage):
            replies[item.id] = (item.payload.answer, "nexus-answer")
        elif isinstance(item, PartialResponse):
            replies[item.id] = (f"{item.payload.answer} …", "nexus-streaming")
        elif isinstance(item, ErrorMessage):
            replies[item.id] = (
                f"Error ({item.payload.code}): {item.payload.message}",
                "nexus-error",
            )
    waiting = (
        ("… waiting for the answer", "nexus-waiting")
        if state.connected
        else ("… queued: sent when the connection is back", "nexus-queued")
    )

    status, colour = describe(state)
    solara.Title("Nexus chat")
    with solara.Column(style={"max-width": "760px", "padding": "12px"}):
        solara.Text(
            status,
            classes=["nexus-status"],
            style={"color": colour, "font-weight": "bold"},
        )
        with solara.Column(gap="6px", classes=["nexus-conversation"]):
            for ask_id, question in questions.items():
                reply, kind = replies.get(ask_id, waiting)
                with solara.Column(gap="2px", classes=["nexus-turn"]):
                    solara.Text(
                        f"You: {question}", classes=["nexus-question"], style={"font-weight": "500"}
                    )
                    solara.Text(f"Nexus: {reply}", classes=[kind])
        with solara.Row():
            solara.InputText(
                "Ask Nexus",
                value=text,
                on_value=set_text,
                continuous_update=True,
                classes=["nexus-input"],
            )
            solara.Button(
                "Send",
                on_click=send,
                color="primary",
                classes=["nexus-send"],
                disabled=not text.strip(),  # enabled once this render holds the text
            )
            solara.Button("Clear", on_click=clear, classes=["nexus-clear"])
