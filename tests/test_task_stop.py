"""``stop_tasks``: the connection's helper tasks stop without hiding a cancellation of
the task that stops them (no sockets: asyncio alone)."""

from __future__ import annotations

import asyncio

from nexus_reactive.task_stop import stop_tasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def _slow_to_stop(unwind: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await unwind.wait()
        raise


async def test_each_task_is_cancelled_and_awaited_and_none_is_skipped() -> None:
    tasks = [asyncio.ensure_future(_forever()) for _ in range(2)]
    await asyncio.sleep(0)

    assert await stop_tasks(tasks[0], None, tasks[1]) is False
    assert all(task.cancelled() for task in tasks)


async def test_a_cancellation_of_the_caller_meanwhile_is_reported_not_swallowed() -> None:
    unwind = asyncio.Event()
    helper = asyncio.ensure_future(_slow_to_stop(unwind))
    await asyncio.sleep(0)
    seen: list[bool] = []

    async def cleanup() -> None:
        seen.append(await stop_tasks(helper))

    caller = asyncio.ensure_future(cleanup())
    await asyncio.sleep(0)  # the caller waits for the helper to stop
    caller.cancel()
    unwind.set()
    await asyncio.gather(caller, return_exceptions=True)

    assert seen == [True] and helper.cancelled()


async def test_a_cancellation_already_under_way_is_left_to_go_on_by_itself() -> None:
    # As in a finally run for a CancelledError: stop_tasks does not ask to raise
    # another one, and the caller's own goes on.
    helper = asyncio.ensure_future(_forever())
    await asyncio.sleep(0)
    seen: list[bool] = []

    async def cleanup() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            seen.append(await stop_tasks(helper))

    caller = asyncio.ensure_future(cleanup())
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.gather(caller, return_exceptions=True)

    assert seen == [False] and caller.cancelled() and helper.cancelled()
