"""A store's event loop, seen from the other threads and loops that call the store.

A store's work runs on its loop. Its commands (``send_message``, ``clear_messages``,
``reconnect``) hand that work over from any thread, and ``close()`` may be awaited on
any loop; that needs the store's loop to run. While it is stopped, the work would wait
there unseen (and be dropped if the loop is then closed), and a ``close()`` awaited
elsewhere would wait for it for ever: both are refused, before any side effect, with a
:class:`~nexus_reactive.UsageError` that says what to do. Once the loop is closed,
nothing can run there again: every call is refused, on any thread.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from .errors import UsageError

__all__ = ["await_on", "check_store_loop"]

#: How often a close() awaited on another loop looks whether the store's loop closed.
POLL_INTERVAL = 0.1

_NOTHING = {"send_message": "nothing was sent", "close": "nothing was done"}
_ADVICE = (
    "Close a store on its loop before that loop ends: `async with use_websocket(...) as "
    "store:` inside the coroutine that asyncio.run runs (or `await store.close()` before "
    "it returns); then make a new store on a running loop."
)


def check_store_loop(loop: asyncio.AbstractEventLoop, name: str, *, elsewhere: bool) -> None:
    """Refuse ``name`` if the store's ``loop`` cannot do it: it is closed, or ``elsewhere``
    (called from another thread, or awaited on another loop) and it is not running. On the
    loop's own thread a stopped loop is fine: the caller runs it in slices.

    Raises:
        UsageError: in the API's words; nothing was done.
    """
    if loop.is_closed():
        raise loop_closed(name)
    if elsewhere and not loop.is_running():
        nothing = _NOTHING.get(name, "nothing was done")
        there = "loop.run_until_complete(store.close())" if name == "close" else "on its thread"
        raise UsageError(
            f"{name}() was called from thread {threading.current_thread().name!r} while this "
            f"store's event loop is not running (it was stopped); {nothing}. The store's work "
            "runs on that loop, and would wait there unseen. Call it while the loop runs, or "
            f"run the loop again and call it there ({there}); close a store before stopping "
            "its loop."
        )


def loop_closed(name: str, *, during: bool = False) -> UsageError:
    """The error for ``name`` once the store's loop is closed (``during``: while it waited)."""
    if during:
        return UsageError(
            f"{name}(): this store's event loop was closed before {name}() could finish on "
            f"it; the store may be left half closed. {_ADVICE}"
        )
    nothing = _NOTHING.get(name, "nothing was done")
    return UsageError(
        f"{name}(): this store's event loop is closed, so the store can do nothing more; "
        f"{nothing}. {_ADVICE}"
    )


async def await_on(
    loop: asyncio.AbstractEventLoop, work: Callable[[], Coroutine[Any, Any, None]], name: str
) -> None:
    """Run ``work()`` on ``loop`` (running, but not the caller's) and wait for it there.

    If ``loop`` stops meanwhile, this waits for it to run again; if it is closed first,
    the work can never finish: raise instead of waiting for ever. Cancelling the caller
    cancels the work on ``loop``, as awaiting it there would.

    Raises:
        UsageError: ``loop`` was closed before the work finished (or began).
    """
    coro = work()
    try:
        future = asyncio.run_coroutine_threadsafe(coro, loop)
    except RuntimeError:  # closed since it was checked: the coroutine never ran
        coro.close()
        raise loop_closed(name) from None
    waiting = asyncio.wrap_future(future)
    try:
        while not future.done():
            await asyncio.wait((waiting,), timeout=POLL_INTERVAL)
            if loop.is_closed() and not future.done():
                # Dropped with the loop: never "never awaited" if it had not begun.
                if inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
                    coro.close()
                raise loop_closed(name, during=True)
    except asyncio.CancelledError:
        waiting.cancel()
        raise
    await waiting  # its outcome (settled once the future is done)
