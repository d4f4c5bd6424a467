"""Property-based fuzzing over real sockets: arbitrary frames into the reference
server's handler and into the client's receive loop. Neither may raise out of its
loop, crash or drop the connection, and valid traffic after the junk still works."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nexus_reactive import (
    NexusError,
    ProtocolError,
    ServerError,
    WebSocketConfig,
    WebSocketService,
)
from nexus_reactive.server import create_app

from .conftest import KEY
from .waiting import EVENTUALLY

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(
            ["ask", "response", "error", "auth", "challenge", "auth_ok", "response_chunk", "x"]
        )
        | st.text(max_size=10)
        | json_values,
        "id": st.text(max_size=140) | json_values,
        "payload": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "query": json_values,
                "answer": json_values,
                "code": json_values,
                "message": json_values,
                "delta": json_values,
                "index": json_values,
            },
        ),
    },
)
frames = st.one_of(
    st.text(max_size=200),
    envelopes.map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=64),
)


@dataclass
class Background:
    """Servers on a loop in a thread, so sync hypothesis tests can use them."""

    loop: asyncio.AbstractEventLoop
    nexus_port: int = 0
    scripted_port: int = 0
    script: list[str | bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def background() -> Iterator[Background]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    state = Background(loop)

    async def scripted_handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in state.script:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        await ws.send_str(
            json.dumps({"type": "response", "id": "sentinel", "payload": {"answer": "still here"}})
        )
        async for _ in ws:
            pass
        return ws

    async def start() -> list[web.AppRunner]:
        runners = []
        scripted = web.Application()
        scripted.router.add_get("/", scripted_handler)
        for app in (create_app(api_keys=KEY), scripted):
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            runners.append(runner)
        state.nexus_port = runners[0].addresses[0][1]
        state.scripted_port = runners[1].addresses[0][1]
        return runners

    runners = asyncio.run_coroutine_threadsafe(start(), loop).result(EVENTUALLY)
    yield state

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(EVENTUALLY)
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(frames, min_size=1, max_size=6))
def test_server_survives_arbitrary_frames(background: Background, junk: list[str | bytes]) -> None:
    async def run() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(
                f"ws://127.0.0.1:{background.nexus_port}/", headers={"x-api-key": KEY}
            ) as ws,
        ):
            for frame in junk:
                if isinstance(frame, bytes):
                    await ws.send_bytes(frame)
                else:
                    await ws.send_str(frame)
            ask = {"type": "ask", "id": "after-junk", "payload": {"query": "still there?"}}
            await ws.send_str(json.dumps(ask))
            while True:
                msg = await asyncio.wait_for(ws.receive(), EVENTUALLY)
                assert msg.type is aiohttp.WSMsgType.TEXT, f"connection ended: {msg}"
                reply = json.loads(msg.data)
                assert reply["type"] in ("error", "response")
                if reply["id"] == "after-junk" and reply["type"] == "response":
                    break

    asyncio.run(run())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.lists(frames, min_size=1, max_size=6))
def test_client_survives_arbitrary_frames(background: Background, junk: list[str | bytes]) -> None:
    background.script = junk

    async def run() -> None:
        config = WebSocketConfig(
            url=f"ws://127.0.0.1:{background.scripted_port}/", api_key=KEY, heartbeat=None
        )
        service = WebSocketService(config)
        errors: list[NexusError] = []
        seen: list[Any] = []
        service.errors.subscribe(errors.append)
        service.messages.subscribe(seen.append)
        await service.connect()
        deadline = asyncio.get_running_loop().time() + EVENTUALLY
        while not any(getattr(m, "id", None) == "sentinel" for m in seen):
            if service.state.value.failed:
                break  # e.g. a valid challenge: fatal by design, and reported in words
            assert asyncio.get_running_loop().time() < deadline, "the sentinel never arrived"
            await asyncio.sleep(0.005)
        if not service.state.value.failed:
            assert service.state.value.connected
            assert all(isinstance(e, (ProtocolError, ServerError)) for e in errors)
        else:
            assert "key-pair" in (service.state.value.error or "")
        await service.close()

    asyncio.run(run())
