"""Notebook display: rich HTML reprs and a live view that updates in place.

IPython is imported only when a live view is asked for; nothing here is needed
outside notebooks.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .core import ConnectionState
from .messages import ErrorMessage, Message, PartialResponse, ResponseMessage

if TYPE_CHECKING:
    from .store import WebSocketStore

__all__ = ["history_html", "live_view", "state_html", "store_html"]

_SHOWN = 20  # newest messages shown in a view


def state_html(state: ConnectionState) -> str:
    """One line: a coloured dot and the state in words."""
    return state._repr_html_()


def history_html(messages: Sequence[Message | PartialResponse]) -> str:
    """The newest messages as a small table."""
    rows = []
    for message in list(messages)[-_SHOWN:]:
        if isinstance(message, ResponseMessage):
            text = message.payload.answer
        elif isinstance(message, PartialResponse):
            text = f"{message.payload.answer} \u2026"
        elif isinstance(message, ErrorMessage):
            text = f"{message.payload.code}: {message.payload.message}"
        else:
            text = repr(message.payload)
        rows.append(
            f"<tr><td><code>{html.escape(message.type)}</code></td>"
            f"<td><code>{html.escape(message.id[:8])}</code></td>"
            f"<td>{html.escape(text)}</td></tr>"
        )
    more = len(messages) - len(rows)
    caption = f"{len(messages)} messages" + (f" (newest {len(rows)} shown)" if more > 0 else "")
    return (
        f"<table><caption style='text-align:left'>{caption}</caption>"
        "<tr><th>type</th><th>id</th><th>content</th></tr>" + "".join(rows) + "</table>"
    )


def store_html(
    state: ConnectionState, messages: Sequence[Message | PartialResponse], url: str
) -> str:
    """A store: where it connects, its state, and its newest messages."""
    return (
        f"<div><b>WebSocketStore</b> <code>{html.escape(url)}</code><br>"
        f"{state_html(state)}{history_html(messages)}</div>"
    )


def live_view(store: WebSocketStore) -> Any:
    """Display ``store`` and update the output in place on every change.

    Returns:
        The IPython display handle. The view stops updating when the store closes.

    Raises:
        ImportError: IPython is not installed (``pip install nexus-reactive[notebook]``).
    """
    from IPython.display import HTML, display

    handle = display(HTML(store._repr_html_()), display_id=True)

    def refresh(_: object) -> None:
        handle.update(HTML(store._repr_html_()))

    store.state.subscribe(refresh)
    store.messages.subscribe(refresh)
    return handle
