"""One socket for many stores, when they ask for it (``share=True``): services
shared by reference count.

Stores created with ``share=True`` for the same server with the same connection
settings (URL, key, signing key, TLS, timeouts...) on the same event loop share
one :class:`WebSocketService`; it closes when the last of them closes. Store
options (``max_messages``, ``batch_interval``, ``scheduler``) are the store's own,
not part of the settings compared. Each shared service has one
:class:`~nexus_reactive.fanout.Router`, which gives each store its own answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from .config import WebSocketConfig
from .fanout import Router
from .service import WebSocketService

__all__ = ["acquire", "release"]


@dataclass(eq=False, slots=True)
class _Entry:
    loop: asyncio.AbstractEventLoop
    key: WebSocketConfig
    service: WebSocketService
    router: Router
    users: int


_entries: list[_Entry] = []


def acquire(
    config: WebSocketConfig, loop: asyncio.AbstractEventLoop, *, history_limit: int | None = None
) -> tuple[WebSocketService, Router]:
    """The shared service for ``config`` on ``loop`` and its router, created on first
    use (with ``history_limit`` for its journal, if it has one)."""
    for entry in _entries:
        if entry.loop is loop and entry.key == config and not entry.service.closed:
            entry.users += 1
            return entry.service, entry.router
    service = WebSocketService(config, history_limit=history_limit)
    router = Router(service.messages)
    _entries.append(_Entry(loop, config, service, router, 1))
    return service, router


def release(service: WebSocketService) -> bool:
    """Give back a service; ``True`` when that was its last user (close it then)."""
    for index, entry in enumerate(_entries):
        if entry.service is service:
            entry.users -= 1
            if entry.users > 0:
                return False
            del _entries[index]
            entry.router.close()
            return True
    return True  # not pooled: the caller owns it
