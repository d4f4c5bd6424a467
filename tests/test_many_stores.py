"""Many stores on one shared connection (issue 14, item 5): an idle store costs memory,
never a task or a timer of its own. Counted, not timed (the bench's ``stores``
section measures memory per store, fan-out and create/close times)."""

from __future__ import annotations

import asyncio
from typing import Any

from nexus_reactive import use_websocket

from .conftest import Nexus
from .waiting import wait_for


def _scheduled(loop: asyncio.AbstractEventLoop) -> int:
    """Timers the loop holds, not counting cancelled ones (asyncio and uvloop)."""
    timers = getattr(loop, "_scheduled", None)
    if timers is not None:
        return sum(1 for handle in timers if not handle.cancelled())
    # uvloop keeps its timers in libuv; it has no public count. Ready callbacks and
    # tasks are then all this test can see.
    return 0


async def _settled(loop: asyncio.AbstractEventLoop) -> tuple[int, int]:
    for _ in range(5):
        await asyncio.sleep(0)
    return len(asyncio.all_tasks(loop)), _scheduled(loop)


async def test_idle_shared_stores_hold_no_task_or_timer_of_their_own(nexus: Nexus) -> None:
    loop = asyncio.get_running_loop()
    config = nexus.config()
    first = use_websocket(config, share=True)
    stores: list[Any] = []
    try:
        await wait_for(lambda: first.state.value.connected)
        tasks_before, timers_before = await _settled(loop)

        stores = [use_websocket(config, share=True) for _ in range(100)]
        assert all(store.service is first.service for store in stores)
        # Each store starts one connect task; on a shared, connected service it ends at once.
        await wait_for(lambda: all(s._connecting is None or s._connecting.done() for s in stores))
        tasks_after, timers_after = await _settled(loop)

        assert tasks_after == tasks_before, (
            f"100 idle shared stores added {tasks_after - tasks_before} task(s): "
            f"{[t.get_name() for t in asyncio.all_tasks(loop)]}"
        )
        assert timers_after == timers_before, (
            f"100 idle shared stores added {timers_after - timers_before} timer(s)"
        )
        assert nexus.stats.connections_total == 1  # one socket for all 101
    finally:
        await asyncio.gather(*(store.close() for store in stores))
        await first.close()
    assert first.service.closed
