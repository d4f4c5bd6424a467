"""``use_websocket``: the React hook's mirror; it makes a :class:`~nexus_reactive.WebSocketStore`
on the running event loop (see :mod:`nexus_reactive.store`)."""

from __future__ import annotations

import asyncio
from typing import Any, overload

from reactivex import abc

from .config import WebSocketConfig
from .errors import UsageError
from .store import WebSocketStore

__all__ = ["use_websocket"]


@overload
def use_websocket(
    config: WebSocketConfig,
    /,
    *,
    scheduler: abc.SchedulerBase | None = None,
    team_id: str | None = None,
    share: bool = False,
    max_messages: int | None = None,
    batch_interval: float | None = None,
) -> WebSocketStore: ...
@overload
def use_websocket(
    config: None = None,
    /,
    *,
    scheduler: abc.SchedulerBase | None = None,
    team_id: str | None = None,
    share: bool = False,
    max_messages: int | None = None,
    batch_interval: float | None = None,
    **options: Any,
) -> WebSocketStore: ...
def use_websocket(
    config: WebSocketConfig | None = None,
    /,
    *,
    scheduler: abc.SchedulerBase | None = None,
    team_id: str | None = None,
    share: bool = False,
    max_messages: int | None = None,
    batch_interval: float | None = None,
    **options: Any,
) -> WebSocketStore:
    """Create a store and start connecting at once, like the TypeScript ``useWebSocket`` hook.

    Call it from a coroutine (the store runs on the running event loop)::

        async with use_websocket(url="ws://localhost:8000") as store:
            state, messages, send_message, clear_messages = store

    Args:
        config: a :class:`WebSocketConfig`; or give its fields as keywords
            (``url=..., api_key=...``), optionally overriding those of ``config``.
        scheduler: deliver every emission of ``state`` and ``messages`` on this
            reactivex scheduler (e.g. ``TkinterScheduler``, ``QtScheduler``): the
            latest value, with at most one delivery pending per stream.
        team_id: scope the store to a team: its asks carry this ``team_id`` and it
            sees only the answers to its own asks.
        share: share one connection with the other ``share=True`` stores of this
            loop that have the same connection settings. Off by default: each store
            opens its own. A shared store still sees only the answers to its own
            asks, and the server's unsolicited messages.
        max_messages: how many received messages the history keeps (1,000).
        batch_interval: ``messages`` emits at most once per this many seconds
            (e.g. 0.05 for a UI that repaints at 20 Hz); ``None``: at most once per
            event-loop tick. Nothing is dropped either way.

    Raises:
        UsageError: there is no running event loop.
        ConfigError: an option is invalid or unknown.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise UsageError(
            "use_websocket() needs a running asyncio event loop. From a script, call it "
            "inside a coroutine: `async def main(): async with use_websocket(...) as "
            "store: ...` then `asyncio.run(main())`; or use use_websocket_sync(...), which "
            "runs its own loop in a background thread (Tk/Qt apps, plain REPLs)."
        ) from None
    resolved = WebSocketConfig.from_options(config, **options) if options else config
    if resolved is None:
        resolved = WebSocketConfig()
    return WebSocketStore(
        resolved,
        loop,
        scheduler,
        team_id=team_id,
        share=share,
        max_messages=max_messages,
        batch_interval=batch_interval,
    )
