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
import logging
from dataclasses import dataclass

from .config import WebSocketConfig
from .errors import NexusError
from .fanout import Router
from .service import WebSocketService
from .task_stop import stop_tasks

__all__ = ["acquire", "release"]

log = logging.getLogger("nexus_reactive.store")


@dataclass(eq=False, slots=True)
class _Entry:
    loop: asyncio.AbstractEventLoop
    key: WebSocketConfig
    service: WebSocketService
    router: Router
    users: int
    # The one task that runs connect() for the stores: not one per store.
    connecting: asyncio.Task[None] | None = None


_entries: list[_Entry] = []


def acquire(
    config: WebSocketConfig, loop: asyncio.AbstractEventLoop, *, history_limit: int | None = None
) -> tuple[WebSocketService, Router]:
    """The shared service for ``config`` on ``loop`` and its router, created on first
    use (with ``history_limit`` for its journal, if it has one); connecting, unless
    it is connected already."""
    for entry in _entries:
        same = entry.key is config or entry.key == config  # the same object: no field walk
        if entry.loop is loop and same and not entry.service.closed:
            entry.users += 1
            break
    else:
        service = WebSocketService(config, history_limit=history_limit)
        entry = _Entry(loop, config, service, Router(service.messages), 1)
        _entries.append(entry)
    connecting = entry.connecting
    idle = connecting is None or connecting.done()
    if idle and not config.lazy and not entry.service.state.value.connected:
        # A store connects its service when it is created (a lazy one: on demand);
        # stores made together, or while the connection opens, wait for one attempt.
        entry.connecting = loop.create_task(
            _connect(entry.service), name="nexus-reactive-store-connect"
        )
    return entry.service, entry.router


async def release(service: WebSocketService) -> None:
    """Give back a shared service; the last user's release closes it."""
    cancelled = False  # (a cancellation of the caller meanwhile: raised once closed)
    for index, entry in enumerate(_entries):
        if entry.service is service:
            entry.users -= 1
            if entry.users > 0:
                return
            del _entries[index]
            entry.router.close()
            connecting = entry.connecting
            if connecting is not None and not connecting.done():
                cancelled = await stop_tasks(connecting)
            break
    await service.close()
    if cancelled:
        raise asyncio.CancelledError


async def _connect(service: WebSocketService) -> None:
    try:
        await service.connect()
    except NexusError as exc:
        # Already visible to the stores: state.value.error and errors.
        log.info("the shared connection could not connect: %s", exc)
