"""Edges of the batch receive path (``Receiver.on_frames``) found in review: each
must mean what the same frames meant one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from nexus_reactive import WebSocketService

from .conftest import client_config
from .faults import wait_for
from .test_receive_batches import burst_after_ask, pushes, response


async def test_a_handler_added_while_the_last_message_of_a_read_is_delivered_hears_it(
    aiohttp_server: Any,
) -> None:
    # One by one, a handler added by a subscriber hears the message it was added
    # during; the last message of a read (of a read of one, the usual case) too.
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(ask_id), *pushes(0, 20), response("end")]
    )
    handled: list[str] = []
    added: list[Callable[[], None]] = []
    async with WebSocketService(client_config(url)) as service:

        def on_next(message: Any) -> None:
            if message.id == "end" and not added:
                added.append(service.on_message("response", lambda m: handled.append(m.id)))

        service.messages.subscribe(on_next)
        service.send_query("go")
        await wait_for(lambda: bool(added))
        assert handled == ["end"]


def _pump_locals(task: asyncio.Task[Any]) -> dict[str, Any] | None:
    """The locals of the transport's receive loop, found down the task's await chain."""
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None)
        if frame is not None and frame.f_code.co_name == "_pump":
            return dict(frame.f_locals)
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return None


async def test_the_receive_loop_holds_no_read_while_it_waits_for_the_next(
    aiohttp_server: Any,
) -> None:
    # A read can be hundreds of kilobytes (a flood, or big answers): once handled, the
    # loop must not keep its frames alive while the connection idles.
    big = "x" * 50_000
    url = await burst_after_ask(
        aiohttp_server, lambda ask_id: [response(f"big-{n}", big) for n in range(20)]
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url)) as service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        service.send_query("go")
        await wait_for(lambda: seen[-1:] == ["big-19"])
        tasks = [t for t in asyncio.all_tasks() if _pump_locals(t) is not None]
        assert tasks, "the receive loop's task was not found"
        held = _pump_locals(tasks[0]) or {}
        frames = held.get("frames") or []
        assert sum(map(len, frames)) < 50_000, f"{len(frames)} frames held while idle"


@pytest.mark.parametrize("metrics", [False, True], ids=["plain", "metrics"])
async def test_metrics_do_not_change_how_an_ask_answered_mid_read_ends(
    aiohttp_server: Any, metrics: bool
) -> None:
    # The answer is in the same read as a push whose subscriber disconnects. An ask
    # answered in a read is settled before the subscribers hear of the read's earlier
    # messages: it ends answered, with metrics on as with them off.
    url = await burst_after_ask(
        aiohttp_server,
        lambda ask_id: [*pushes(0, 5), response(ask_id, "the answer"), response("end")],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url, metrics=metrics)) as service:
        task = asyncio.ensure_future(service.ask("q"))

        def on_next(message: Any) -> None:
            seen.append(message.id)
            if message.id == "push-2":
                service.disconnect()

        service.messages.subscribe(on_next)
        outcome = (await asyncio.gather(task, return_exceptions=True))[0]
        await wait_for(lambda: seen[-1:] == ["end"])
        if metrics:
            assert service.metrics.value.asks_answered == 1
    assert getattr(outcome, "answer", outcome) == "the answer"
