"""Stopping the library's own helper tasks without swallowing a cancellation.

``task.cancel(); with suppress(CancelledError): await task`` hides a cancellation of
the *awaiting* task that arrives meanwhile: ``close()`` or ``reconnect()`` cancelling
the connection while it stops its writer would be lost, and the connection would go
on (``close()`` then waits for it for good).
"""

from __future__ import annotations

import asyncio

__all__ = ["stop_tasks"]


async def stop_tasks(*tasks: asyncio.Task[None] | None) -> bool:
    """Cancel each of ``tasks`` and wait for it to end, in turn.

    Returns:
        Whether the calling task was cancelled meanwhile (or already being cancelled):
        the caller finishes its clean-up, then raises ``CancelledError``.
    """
    cancelled = False
    for task in tasks:
        if task is None:
            continue
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:  # the task's own end, or the caller's
            current = asyncio.current_task()
            cancelled = cancelled or (current is not None and current.cancelling() > 0)
    return cancelled
