"""A store's close() that its caller cancels (a timeout, a task group): the cancellation
reaches the caller, and the store is closed all the same, with nothing left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import Phase, pool, use_websocket
from nexus_reactive.testing import client_config

from .conftest import KEY, library_tasks
from .waiting import wait_for


@pytest.mark.parametrize("share", [False, True])
async def test_a_cancelled_store_close_is_not_swallowed_and_still_closes(
    aiohttp_server: Any, share: bool
) -> None:
    upgrades: list[web.Request] = []
    release = asyncio.Event()

    async def held_upgrade(request: web.Request) -> web.StreamResponse:
        upgrades.append(request)  # the store's connect() waits for this upgrade
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/", held_upgrade)
    server = await aiohttp_server(app, host="127.0.0.1")
    store = use_websocket(client_config(f"ws://127.0.0.1:{server.port}/", KEY), share=share)
    completed: list[bool] = []
    store.messages.subscribe(on_completed=lambda: completed.append(True))
    await wait_for(lambda: upgrades)
    # The task that runs connect(): the store's own, or the shared connection's.
    connecting = pool._entries[0].connecting if share else store._connecting
    assert connecting is not None
    closing: list[asyncio.Task[None]] = []
    # close() cancels the store's connect task and waits for it: its caller cancels
    # close() just then (a timeout expiring, say), as that task ends.
    connecting.add_done_callback(lambda _: closing[0].cancel())
    closing.append(asyncio.create_task(store.close()))
    await asyncio.gather(closing[0], return_exceptions=True)
    assert closing[0].cancelled(), "close() swallowed its caller's cancellation"
    assert completed == [True]  # the store's streams complete all the same
    await wait_for(lambda: library_tasks() == [])
    await store.close()  # idempotent, and the store is closed whatever the cancel cut short
    assert store.state.value.phase is Phase.CLOSED
    release.set()
