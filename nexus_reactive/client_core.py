"""The pure client a :class:`~nexus_reactive.config.WebSocketConfig` asks for: its
outbox limit, its memory of answered ids, its retry policy, idle if ``lazy``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import WebSocketConfig
from .core import Backoff, ClientCore, Reconnector
from .core.demand import REASON_UNUSED

if TYPE_CHECKING:
    from .waiter import Waiter

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
    core: ClientCore[Waiter] = ClientCore(
        outbox_limit=config.outbox_limit, reconnector=reconnector, remember=config.dedupe_size
    )
    if config.lazy:
        core.idle(REASON_UNUSED)
    return core
