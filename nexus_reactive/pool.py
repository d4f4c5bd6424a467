"""One socket for many stores: services shared by reference count.

Stores created for the same server with the same connection settings (URL, key,
signing key, TLS, timeouts...) on the same event loop share one
:class:`WebSocketService`; it closes when the last of them closes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass

from .config import WebSocketConfig
from .service import WebSocketService

__all__ = ["acquire", "release"]

# Options that belong to one store, not to the connection.
_PER_STORE: dict[str, object] = {"max_messages": 1, "batch_interval": None}


@dataclass(eq=False, slots=True)
class _Entry:
    loop: asyncio.AbstractEventLoop
    key: WebSocketConfig
    service: WebSocketService
    users: int


_entries: list[_Entry] = []


def _key(config: WebSocketConfig) -> WebSocketConfig:
    return dataclasses.replace(config, **_PER_STORE)  # type: ignore[arg-type]


def acquire(config: WebSocketConfig, loop: asyncio.AbstractEventLoop) -> WebSocketService:
    """The shared service for ``config`` on ``loop``, created on first use."""
    key = _key(config)
    for entry in _entries:
        if entry.loop is loop and entry.key == key and not entry.service.closed:
            entry.users += 1
            return entry.service
    service = WebSocketService(config)
    _entries.append(_Entry(loop, key, service, 1))
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
