"""Misuse refused before any side effect: calls made off the event loop's thread."""

from __future__ import annotations

import asyncio
import threading

from .errors import UsageError

__all__ = ["check_loop_thread"]


def check_loop_thread(loop: asyncio.AbstractEventLoop | None, name: str) -> None:
    """Refuse, before any side effect, a call of ``name`` made off ``loop``'s thread.

    The service's state lives on its event loop's thread; everything that acts on
    it (send, ask, connect, disconnect, close) must run there while that loop runs.
    Registering handlers (``on_message``) and subscribing are safe from any thread.

    Raises:
        UsageError: ``loop`` runs, and not in the calling thread.
    """
    if loop is None or not loop.is_running():
        return
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not loop:
        raise UsageError(
            f"{name}() was called from thread {threading.current_thread().name!r}, which "
            "is not running this service's event loop; nothing was done. Call it on "
            f"the loop's thread: from another thread use loop.call_soon_threadsafe("
            f"service.{name}, ...) or asyncio.run_coroutine_threadsafe(service.ask(...), "
            "loop); or use a store's send_message / use_websocket_sync(...), which are "
            "safe from any thread."
        )
