"""The pure client a :class:`~nexus_reactive.config.WebSocketConfig` asks for: its
outbox limit, its memory of answered ids and its retry policy."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import WebSocketConfig
from .core import Backoff, ClientCore, Reconnector

if TYPE_CHECKING:
    from .asks import Waiter

__all__ = ["new_core"]


def new_core(config: WebSocketConfig) -> ClientCore[Waiter]:
    """The pure client for ``config``: its outbox limit and its retry policy."""
    reconnector = Reconnector(
        backoff=Backoff(
            initial=config.reconnect_interval,
            maximum=config.max_reconnect_interval,
            jitter=config.reconnect_jitter,
        ),
        max_attempts=config.max_reconnect_attempts,
        reset_after=config.reset_backoff_after,
        should_reconnect=config.should_reconnect,
    )
    return ClientCore(
        outbox_limit=config.outbox_limit, reconnector=reconnector, remember=config.dedupe_size
    )
