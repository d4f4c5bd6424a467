"""``nexus-reactive chat``: a terminal chat with a Nexus server, built with Textual.

It uses nothing but the public store API: :func:`~nexus_reactive.use_websocket`
on Textual's own asyncio loop, ``store.state`` for the status line, ``store.messages``
for the answers (matched to questions by the id ``send_message`` returns), and
``clear_messages`` / ``close`` for the keys. The question box has the focus from the
start; the status line above the footer says how the connection is. Every emission
arrives on the loop's thread, which is the thread Textual draws on, so handlers update
widgets directly.

Keys: Enter sends, Ctrl+L clears the conversation, Ctrl+Q closes the connection and quits.
Textual is an optional dependency: ``pip install 'nexus-reactive[tui]'``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reactivex.abc import DisposableBase
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Footer, Input, Static

from .config import API_KEY_ENV, WebSocketConfig
from .core import ConnectionState, Phase
from .errors import NexusError
from .messages import (
    AskResponse,
    ErrorMessage,
    ErrorPayload,
    PartialResponse,
    ResponseMessage,
)
from .store import History, HistoryItem, WebSocketStore, use_websocket

__all__ = ["ChatApp", "add_arguments", "describe_state", "main", "run_chat"]

DEFAULT_URL = "ws://localhost:8000"
_CONTEXT_SHOWN = 60  # characters of an answer's context shown under it


def describe_state(state: ConnectionState) -> str:
    """Say the connection state in words, for the status bar.

    Args:
        state: a snapshot from ``store.state``.

    Returns:
        One line such as ``"Reconnecting: attempt 2, retry in 0.50s (last error: ...)"``.
    """
    why = f" (last error: {state.error})" if state.error else ""
    if state.connected:
        return "Connected"
    if state.failed:
        return f"Failed: {state.error or 'the connection gave up'}"
    if state.phase is Phase.WAITING:
        delay = f", retry in {state.retry_in:.2f}s" if state.retry_in is not None else ""
        return f"Reconnecting: attempt {state.attempt}{delay}{why}"
    if state.reconnecting:
        return f"Reconnecting: attempt {state.attempt} under way{why}"
    if state.authenticating:
        return "Connecting: authenticating"
    if state.connecting:
        return "Connecting"
    return str(state.phase.value).capitalize()


@dataclass
class _Turn:
    """One question and whatever has come back for it so far."""

    question: str
    streamed: str | None = None  # the answer so far, while it streams
    answer: AskResponse | None = None
    error: ErrorPayload | None = None


class ChatApp(App[int]):
    """Ask questions and watch the answers arrive, with the connection shown live.

    Args:
        config: where and how to connect; or give ``url``/``api_key`` instead.
        url: the server's ``ws://`` or ``wss://`` URL, if no ``config``.
        api_key: the API key, if no ``config`` (default: ``NEXUS_API_KEY``).
        team_id: sent with every question, if given.
        wording: rewrites the connection's last error for the status line (the
            ``nexus-reactive chat`` command passes one that names its flags, not the
            Python keywords); default: shown as the library says it.

    Raises:
        ConfigError: ``url`` or ``api_key`` is invalid.
    """

    TITLE = "Nexus chat"
    CSS = """
    #conversation { height: 1fr; padding: 0 1; }
    #status { height: auto; padding: 0 1; background: $panel; color: $warning; }
    #status.connected { color: $success; }
    #status.trouble { color: $error; }
    .turn { margin-bottom: 1; }
    """
    BINDINGS = [  # noqa: RUF012 (Textual's own declaration style)
        Binding("ctrl+l", "clear", "Clear conversation", priority=True),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        config: WebSocketConfig | None = None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        team_id: str | None = None,
        wording: Callable[[str], str] | None = None,
    ) -> None:
        super().__init__()
        self._wording = wording
        options = {k: v for k, v in (("url", url), ("api_key", api_key)) if v is not None}
        self._config = WebSocketConfig.from_options(config, **options)
        self._team_id = team_id
        self._store: WebSocketStore | None = None
        self._subscriptions: list[DisposableBase] = []
        self._turns: dict[str, _Turn] = {}
        self._asked: set[str] = set()  # every id sent, so late replies to cleared ones hide
        self._state = ConnectionState()
        self._notice: str | None = None

    def compose(self) -> ComposeResult:
        # The status line sits at the bottom, on the footer, where the eye goes after
        # typing: "Reconnecting" shows there the moment the server goes away.
        yield VerticalScroll(id="conversation")
        yield Input(placeholder="Ask a question and press Enter", id="question")
        yield Static("Starting", id="status", markup=False)
        yield Footer()

    async def on_mount(self) -> None:
        # Created here, not in __init__: the store lives on the loop Textual runs.
        store = self._store = use_websocket(self._config, team_id=self._team_id)
        self._subscriptions = [
            store.state.subscribe(self._on_state),
            store.messages.subscribe(self._on_messages),
        ]
        self.query_one("#question", Input).focus()

    async def on_unmount(self) -> None:
        await self._close_store()

    # -- commands ----------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        question = event.value.strip()
        if not question or self._store is None:
            return
        try:
            ask_id = self._store.send_message(question)
        except NexusError as exc:  # OutboxFull: nothing was queued, keep the text
            self._set_notice(f"Not sent: {exc}")
            return
        event.input.clear()
        self._asked.add(ask_id)
        self._turns[ask_id] = _Turn(question)
        conversation = self.query_one("#conversation", VerticalScroll)
        conversation.mount(
            Static(
                self._render_turn(self._turns[ask_id]),
                id=f"turn-{ask_id}",
                classes="turn",
                markup=False,
            )
        )
        conversation.anchor()  # follow the newest turn as it grows, until the user scrolls

    async def action_clear(self) -> None:
        if self._store is not None:
            self._store.clear_messages()
        self._turns.clear()
        self._set_notice(None)
        await self.query_one("#conversation", VerticalScroll).remove_children()

    async def action_quit(self) -> None:
        await self._close_store()
        self.exit(0)

    async def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is None:
            return
        # Unsubscribe first: the closing store's last emissions are not for the screen.
        for subscription in self._subscriptions:
            subscription.dispose()
        self._subscriptions = []
        await store.close()

    # -- what the store says -----------------------------------------------------

    def _on_state(self, state: ConnectionState) -> None:
        self._state = state
        self._show_status()
        question = self.query_one("#question", Input)
        question.disabled = state.failed
        if state.failed:
            question.placeholder = "Connection failed: restart the chat to try again"
        elif state.connected:
            question.placeholder = "Ask a question and press Enter"
        else:
            question.placeholder = "Not connected: questions are queued and sent on reconnect"
        for ask_id, turn in self._turns.items():
            if turn.answer is None and turn.error is None:
                self._refresh_turn(ask_id)

    def _on_messages(self, history: History[HistoryItem]) -> None:
        # Rebuilt from the whole history (at most max_messages, one emission a tick):
        # simple, and right even after the store trims its oldest messages.
        seen: dict[str, _Turn] = {}
        for message in history:
            turn = self._turns.get(message.id)
            if turn is None:
                if isinstance(message, ErrorMessage) and message.id not in self._asked:
                    self._set_notice(
                        f"Server error ({message.payload.code}): {message.payload.message}"
                    )
                continue
            fresh = seen.setdefault(message.id, _Turn(turn.question))
            if isinstance(message, PartialResponse):
                fresh.streamed = message.payload.answer
            elif isinstance(message, ResponseMessage):
                fresh.answer = message.payload
            elif isinstance(message, ErrorMessage):
                fresh.error = message.payload
        for ask_id, fresh in seen.items():
            if fresh != self._turns[ask_id]:
                self._turns[ask_id] = fresh
                self._refresh_turn(ask_id)

    # -- drawing -----------------------------------------------------------------

    def _set_notice(self, notice: str | None) -> None:
        self._notice = notice
        self._show_status()

    def _show_status(self) -> None:
        status = self.query_one("#status", Static)
        said = describe_state(self._state)
        error = self._state.error
        if error and self._wording is not None:
            said = said.replace(error, self._wording(error))
        text = f"● {said} · {self._config.shown_url}"
        if self._notice:
            text += f"\n{self._notice}"
        status.update(Content(text))
        status.set_class(self._state.connected, "connected")
        status.set_class(self._state.failed or self._state.reconnecting, "trouble")

    def _refresh_turn(self, ask_id: str) -> None:
        widgets = self.query(f"#turn-{ask_id}").results(Static)
        for widget in widgets:
            widget.update(self._render_turn(self._turns[ask_id]))

    def _render_turn(self, turn: _Turn) -> Content:
        parts: list[Content] = [Content.styled(f"You: {turn.question}", "bold"), Content("\n")]
        if turn.error is not None:
            error = f"Error ({turn.error.code}): {turn.error.message}"
            parts.append(Content.styled(error, "$error"))
        elif turn.answer is not None:
            parts.append(Content(f"Nexus: {turn.answer.answer}"))
            details = _details(turn.answer)
            if details:
                parts += [Content("\n"), Content.styled(details, "dim")]
        elif turn.streamed is not None:
            parts.append(Content.styled(f"Nexus (streaming…): {turn.streamed}", "italic"))
        elif self._state.failed:
            parts.append(Content.styled("Not answered: the connection failed", "$error"))
        elif self._state.connected:
            parts.append(Content.styled("… waiting for the answer", "dim"))
        else:
            parts.append(Content.styled("… queued: will be sent once connected", "dim"))
        return Content.assemble(*parts)


def _details(answer: AskResponse) -> str:
    """Usage and context on one short line."""
    shown: list[str] = []
    if answer.usage is not None:
        usage = answer.usage
        shown.append(
            f"tokens {usage.prompt_tokens} in + {usage.completion_tokens} out"
            f" = {usage.total_tokens}"
        )
    if answer.context:
        context = " ".join(answer.context.split())
        if len(context) > _CONTEXT_SHOWN:
            context = context[: _CONTEXT_SHOWN - 1] + "…"
        shown.append(f"context: {context}")
    return " · ".join(shown)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the chat's options (``--url``, ``--api-key``, ``--team-id``) to ``parser``.

    Deprecated: :func:`main` is the ``nexus-reactive chat`` command now, with all its
    options (``--cafile``, ``--signing-key``, ``--log-level``...); run it with
    ``nexus_reactive.cli.main(["chat", *argv])``. This helper will be removed in a
    later release.

    Args:
        parser: a parser or sub-parser to extend.
    """
    import warnings

    warnings.warn(
        "nexus_reactive.chat.add_arguments() is deprecated: it adds only --url, --api-key "
        'and --team-id; run the chat command with nexus_reactive.cli.main(["chat", ...]), '
        "which takes all of its options",
        DeprecationWarning,
        stacklevel=2,
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default: {DEFAULT_URL})")
    parser.add_argument("--api-key", default=None, help=f"the API key (default: ${API_KEY_ENV})")
    parser.add_argument("--team-id", default=None, help="team scope sent with every question")


def run_chat(
    config: WebSocketConfig,
    team_id: str | None = None,
    wording: Callable[[str], str] | None = None,
) -> int:
    """Run the chat in this terminal until the user quits.

    Args:
        config: where and how to connect.
        team_id: sent with every question, if given.
        wording: rewrites the last error on the status line (see :class:`ChatApp`).

    Returns:
        The exit code: 0 after a normal quit.
    """
    code = ChatApp(config, team_id=team_id, wording=wording).run()
    return 0 if code is None else code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``--url``, ``--api-key``, ``--team-id`` and the client options of the
    ``nexus-reactive chat`` command (``--allow-insecure``, ``--cafile``,
    ``--signing-key``...), then run the chat.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 after a normal quit, 2 for a bad option or a missing key
        (argparse itself exits with 2 on an unknown option).
    """
    # The ``nexus-reactive chat`` command itself: the same flags, help, errors in its
    # flags' words, and checks (a missing key is refused before the screen opens).
    from .cli import main as cli_main

    return cli_main(["chat", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
