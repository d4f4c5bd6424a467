"""Stores and their callers, over real loopback sockets: sharing a connection is opt-in and
a store never sees another store's answers; store options belong to the store."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from typing import Any

import pytest
from aiohttp import web

from nexus_reactive import ConfigError, NexusError, WebSocketConfig, use_websocket

from .conftest import KEY, Nexus, Scripted
from .faults import wait_for
from .schedulers import SlowThreadScheduler
from .test_hostile_callers import DEADLINE

# == defect 6: sharing is opt-in, and a store never sees another store's answers ===========


async def _answering_server(scripted: Any) -> Scripted:
    """Answers every ask by its id, then sends an unsolicited notice and an answer
    to an id nobody asked."""

    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            if frame.get("type") != "ask":
                continue
            ask_id = frame["id"]
            await ws.send_str(
                json.dumps({"type": "response", "id": ask_id, "payload": {"answer": ask_id}})
            )
            await ws.send_str(json.dumps({"type": "notice", "id": f"n-{ask_id}", "payload": {}}))
            await ws.send_str(
                json.dumps({"type": "response", "id": "stray", "payload": {"answer": "?"}})
            )

    return await scripted(script)


async def test_two_stores_for_one_url_have_two_sockets_by_default(scripted: Any) -> None:
    server = await _answering_server(scripted)
    async with use_websocket(server.config()) as a, use_websocket(server.config()) as b:
        assert a.service is not b.service
        a_id = a.send_message("from a")
        b_id = b.send_message("from b")
        await wait_for(lambda: len(a.messages.value) == 3 and len(b.messages.value) == 3, DEADLINE)
        assert server.connections == 2
        # Its own connection: everything on it, and nothing of the other store's.
        assert [m.id for m in a.messages.value] == [a_id, f"n-{a_id}", "stray"]
        assert [m.id for m in b.messages.value] == [b_id, f"n-{b_id}", "stray"]


async def test_shared_stores_see_their_own_answers_and_unsolicited_messages_only(
    scripted: Any,
) -> None:
    server = await _answering_server(scripted)
    config = server.config()
    async with (
        use_websocket(config, share=True) as a,
        use_websocket(config, share=True) as b,
    ):
        assert a.service is b.service
        a_errors: list[NexusError] = []
        a.errors.subscribe(a_errors.append)
        a_id = a.send_message("from a")
        b_id = b.send_message("from b")
        notices = {f"n-{a_id}", f"n-{b_id}"}

        def settled() -> bool:
            return all(
                {m.id for m in s.messages.value} >= notices | {own}
                for s, own in ((a, a_id), (b, b_id))
            )

        await wait_for(settled, DEADLINE)
        assert server.connections == 1
        a_ids = [m.id for m in a.messages.value]
        b_ids = [m.id for m in b.messages.value]
        assert sorted(a_ids) == sorted([a_id, *notices])  # not b's answer, not "stray"
        assert sorted(b_ids) == sorted([b_id, *notices])


async def test_a_shared_store_does_not_see_another_stores_failed_asks(scripted: Any) -> None:
    async def script(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            error = {"code": "bad_request", "message": "no"}
            await ws.send_str(json.dumps({"type": "error", "id": frame["id"], "payload": error}))

    server = await scripted(script)
    config = server.config()
    async with (
        use_websocket(config, share=True) as a,
        use_websocket(config, share=True) as b,
    ):
        a_errors: list[NexusError] = []
        b_errors: list[NexusError] = []
        a.errors.subscribe(a_errors.append)
        b.errors.subscribe(b_errors.append)
        a_id = a.send_message("fails")
        await wait_for(lambda: len(a.messages.value) == 1, DEADLINE)
        b_id = b.send_message("fails too")
        await wait_for(lambda: len(b.messages.value) == 1, DEADLINE)
        # A stray error about an id nobody asked: reported, but to no store.
        a.service.send({"type": "ask", "id": "nobody", "payload": {"query": "x"}})
        await wait_for(lambda: any(f["id"] == "nobody" for f in server.received), DEADLINE)
        await asyncio.sleep(0)  # the stray answer is processed on this loop
        await wait_for(lambda: a.service.pending_count == 0, DEADLINE)
        assert [m.id for m in a.messages.value] == [a_id]
        assert [m.id for m in b.messages.value] == [b_id]
        assert {getattr(e, "message_id", None) for e in a_errors} <= {a_id}
        assert {getattr(e, "message_id", None) for e in b_errors} <= {b_id}


# == store options belong to the store =======================================================


async def test_store_options_are_store_keywords_without_warnings(nexus: Nexus) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = use_websocket(nexus.config(), max_messages=2, batch_interval=0.01)
        by_keyword = use_websocket(url=nexus.url, api_key=KEY, max_messages=7)
    try:
        assert (store.max_messages, store.batch_interval) == (2, 0.01)
        assert by_keyword.max_messages == 7
        assert store.service.config.max_messages is None
        ids = [store.send_message(f"q{i}") for i in range(4)]
        await wait_for(lambda: [m.id for m in store.messages.value] == ids[-2:], DEADLINE)
    finally:
        await store.close()
        await by_keyword.close()


async def test_the_old_config_keywords_still_work_with_a_deprecation_warning(nexus: Nexus) -> None:
    with pytest.warns(DeprecationWarning, match=r"max_messages=\.\.\.\) is deprecated") as info:
        config = WebSocketConfig(url=nexus.url, api_key=KEY, max_messages=2)
    assert info[0].filename == __file__  # points at the caller, not at the library
    with pytest.warns(DeprecationWarning, match="batch_interval"):
        config = WebSocketConfig.from_options(config, batch_interval=0.01)
    async with use_websocket(config) as store:
        assert (store.max_messages, store.batch_interval) == (2, 0.01)
        ids = [store.send_message(f"q{i}") for i in range(4)]
        await wait_for(lambda: [m.id for m in store.messages.value] == ids[-2:], DEADLINE)
    # The store's keyword wins over the deprecated field.
    async with use_websocket(config, max_messages=3) as store:
        assert store.max_messages == 3


def test_invalid_store_options_are_config_errors() -> None:
    async def make(**options: Any) -> None:
        use_websocket(url="ws://127.0.0.1:9", api_key=KEY, **options)

    for options in ({"max_messages": 0}, {"batch_interval": -1.0}, {"max_messages": True}):
        with pytest.raises(ConfigError):
            asyncio.run(make(**options))


async def test_a_flood_of_malformed_frames_into_a_slow_ui_keeps_errors_bounded(
    scripted: Any,
) -> None:
    async def garbage(ws: web.WebSocketResponse, _conn: Scripted) -> None:
        for i in range(5_000):
            await ws.send_str(f"not json {i}")
        await ws.send_str("the last one")
        await ws.receive()

    server = await scripted(garbage)
    ui = SlowThreadScheduler(delay=0.05)
    # The UI thread is busy until the whole flood has arrived: how many errors pile
    # up behind it must not depend on how fast a loaded machine reads the frames.
    busy, flooded = threading.Event(), threading.Event()
    ui.schedule(lambda _scheduler, _state: busy.set() or flooded.wait(DEADLINE))
    try:
        await asyncio.to_thread(busy.wait, DEADLINE)
        async with use_websocket(server.config(), scheduler=ui) as store:
            raw: list[NexusError] = []
            store.service.errors.subscribe(raw.append)  # on the loop, as they come
            seen: list[NexusError] = []
            store.errors.subscribe(seen.append)
            await wait_for(lambda: bool(raw) and "the last one" in str(raw[-1]), DEADLINE)
            assert len(raw) == 5_001
            flooded.set()
            await wait_for(
                lambda: bool(seen) and "the last one" in str(seen[-1]), DEADLINE, interval=0.02
            )
            assert len(seen) < 5_001  # the oldest were dropped, not queued forever
            assert ui.max_queued <= 3  # state, messages, errors: one pending each
    finally:
        flooded.set()
        ui.stop()
