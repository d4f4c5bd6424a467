"""One socket for many stores, when they ask for it (``share=True``): services
shared by reference count.

Stores created with ``share=True`` for the same server with the same connection
settings (URL, key, signing key, TLS, timeouts...) on the same event loop share
one :class:`WebSocketService`; it closes when the last of them closes. Store
options (``max_messages``, ``batch_interval``, ``scheduler``) are the store's own,
not part of the settings compared.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .config import WebSocketConfig
from .service import WebSocketService

__all__ = ["acquire", "release"]


@dataclass(eq=False, slots=True)
class _Entry:
    loop: asyncio.AbstractEventLoop
    key: WebSocketConfig
    service: WebSocketService
    users: int


_entries: list[_Entry] = []


def acquire(
    config: WebSocketConfig, loop: asyncio.AbstractEventLoop, *, history_limit: int | None = None
) -> WebSocketService:
    """The shared service for ``config`` on ``loop``, created on first use (with
    ``history_limit`` for its journal, if it has one)."""
    for entry in _entries:
        if entry.loop is loop and entry.key == config and not entry.service.closed:
            entry.users += 1
            return entry.service
    service = WebSocketService(config, history_limit=history_limit)
    _entries.append(_Entry(loop, config, service, 1))
    return service


def release(service: WebSocketService) -> bool:
    """Give back a service; ``True`` when that was its last user (close it then)."""
    for index, entry in enumerate(_entries):
        if entry.service is service:
            entry.users -= 1
            if entry.users > 0:
                return False
            del _entries[index]
            return True
    return True  # not pooled: the caller owns it
