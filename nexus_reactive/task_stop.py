"""Stopping the library's own helper tasks without swallowing a cancellation.

``task.cancel(); with suppress(CancelledError): await task`` hides a cancellation of
the *awaiting* task that arrives meanwhile: ``close()`` or ``reconnect()`` cancelling
the connection while it stops its writer would be lost, and the connection would go
on (``close()`` then waits for it for good).
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["stop_tasks"]


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> bool:
    """Cancel each of ``tasks`` and wait for it to end, in turn.

    Returns:
        Whether the calling task was cancelled while it waited: the caller finishes
        its clean-up, then raises ``CancelledError``. (A cancellation already under
        way when it was called, the one a ``finally`` runs for, is not counted: it
        goes on by itself.)
    """
    current = asyncio.current_task()
    before = 0 if current is None else current.cancelling()
    for task in tasks:
        if task is None:
            continue
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # its own end, or the caller's
            await task
    return current is not None and current.cancelling() > before
