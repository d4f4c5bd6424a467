"""Misuse refused before any side effect: calls made off the event loop's thread."""

from __future__ import annotations

import asyncio
import math
import threading

from .errors import InvalidArgument, UsageError

__all__ = ["check_awaited_on", "check_loop_thread", "check_timeout"]


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


def check_awaited_on(loop: asyncio.AbstractEventLoop | None, name: str) -> None:
    """Refuse, before any side effect, ``name`` (``ask()``) awaited on a loop that is
    not ``loop`` (the service's, ``None`` until it has one).

    Raises:
        UsageError: ``loop`` runs on another thread (:func:`check_loop_thread`), or
            does not run at all: the answer would come on it, so it would never come.
    """
    check_loop_thread(loop, name)
    if loop is not None:
        raise UsageError(
            f"{name}() was awaited on another event loop than the one this service is "
            "bound to (the loop it first ran on); nothing was sent. Await it on that "
            "loop, or create a WebSocketService on this one."
        )


def check_timeout(timeout: object, name: str) -> None:
    """Refuse, before the ask is queued, a ``timeout=`` that cannot be right (``None``:
    the service's ``request_timeout``).

    Raises:
        InvalidArgument: not a positive, finite number of seconds.
    """
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not (0 < timeout < math.inf)  # (false for NaN too)
    ):
        raise InvalidArgument(
            f"{name}(timeout=...) must be a positive, finite number of seconds, got "
            f"{timeout!r}; nothing was sent. Pass timeout=None for the service's "
            "request_timeout (WebSocketConfig(request_timeout=None): no bound)."
        )
