"""The heartbeat (nexus_reactive/heartbeat.py): a ping only when the server has been
quiet, the link declared dead only when that ping goes unanswered; against a real
server whose pings and pongs it scripts, and the timer alone on a loop."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from nexus_reactive import WebSocketService
from nexus_reactive.heartbeat import Heartbeat

from .conftest import client_config
from .waiting import EVENTUALLY, wait_for

#: The heartbeat of these tests: data at a sixth of it leaves half a second of margin
#: for a loaded machine's scheduling (see tests/waiting.py).
EVERY = 0.6


def recorded(*, pong: bool) -> tuple[Heartbeat, list[float], list[float]]:
    """A heartbeat on this loop, and when it pinged and when it declared the link dead;
    ``pong``: each ping is answered (data) an eighth of a heartbeat later."""
    loop = asyncio.get_running_loop()
    pings: list[float] = []
    dead: list[float] = []

    async def ping() -> None:
        pings.append(loop.time())
        if pong:
            loop.call_later(EVERY / 8, beat.touch)

    beat = Heartbeat(EVERY, ping, lambda: dead.append(loop.time()))
    return beat, pings, dead


async def test_a_quiet_link_is_pinged_then_declared_dead_when_nothing_answers() -> None:
    start = asyncio.get_running_loop().time()
    beat, pings, dead = recorded(pong=False)
    await wait_for(lambda: bool(dead), EVENTUALLY)
    assert len(pings) == 1 and len(dead) == 1
    # Pinged after a heartbeat of quiet at least; dead half a heartbeat after the ping.
    assert pings[0] - start >= EVERY - 0.01
    assert dead[0] - pings[0] >= EVERY / 2 - 0.01
    beat.stop()


async def test_data_after_the_ping_keeps_the_link_and_a_busy_link_is_never_pinged() -> None:
    beat, pings, dead = recorded(pong=True)
    try:
        await wait_for(lambda: len(pings) >= 2, EVENTUALLY)  # answered, so pinged again
        assert not dead
        busy_from = len(pings)
        for _ in range(18):  # data every sixth of a heartbeat, for three heartbeats
            beat.touch()
            await asyncio.sleep(EVERY / 6)  # the data's pace: the thing under test
        assert len(pings) <= busy_from + 1  # (a ping already due may go; then none)
        assert not dead
    finally:
        beat.stop()


async def test_stop_leaves_no_timer_and_no_ping_task() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def ping() -> None:
        started.set()
        await release.wait()  # a ping stuck on a full socket

    beat = Heartbeat(EVERY, ping, lambda: None)
    await asyncio.wait_for(started.wait(), EVENTUALLY)
    beat.stop()
    await wait_for(
        lambda: all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task()),
        EVENTUALLY,
    )
    assert beat._timer is None and beat._pinging is None


async def test_a_server_that_pushes_is_not_pinged_and_one_that_answers_pings_stays(
    aiohttp_server: Any,
) -> None:
    pings: list[bytes] = []
    quiet = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=False)  # its pings and pongs are ours here
        await ws.prepare(request)

        async def push() -> None:
            for n in range(18):  # a push every sixth of a heartbeat, for three heartbeats
                await ws.send_str(
                    json.dumps({"type": "response", "id": f"p{n}", "payload": {"answer": "pushed"}})
                )
                await asyncio.sleep(EVERY / 6)  # the server's pace: the thing under test
            quiet.set()

        pusher = asyncio.ensure_future(push())
        async for msg in ws:
            if msg.type is WSMsgType.PING:
                pings.append(msg.data)
                await ws.pong(msg.data)
        pusher.cancel()
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    config = client_config(f"ws://127.0.0.1:{server.port}/", heartbeat=EVERY)
    async with WebSocketService(config) as service:
        await service.connect()
        await asyncio.wait_for(quiet.wait(), EVENTUALLY)
        assert pings == []  # data came all along: nothing to ask
        await wait_for(lambda: len(pings) >= 2, EVENTUALLY)  # quiet now: pinged, answered
        assert service.state.value.connected  # and never declared dead
        assert service.state.value.attempt == 0
