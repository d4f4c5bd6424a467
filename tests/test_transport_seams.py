"""aiohttp's private names that aiohttp_transport.py relies on, checked against the installed
aiohttp: if a release renames one, this fails and says what degrades, instead of
the client silently losing a feature (or, worse, turning it into a reconnect loop).

Each seam has a public fallback in aiohttp_transport.py; the fallback is tested here too.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import nexus_reactive
from nexus_reactive.transport import open_session, open_transport, private_seams

from .faults import wait_for

WHAT_DEGRADES = {
    "ClientSession._retry_connection": (
        "aiohttp may re-send the upgrade once on a reset: one attempt becomes two sockets"
    ),
    "ClientWebSocketResponse._response": (
        "the x-nexus-auth header is not read: a client without a key waits CHALLENGE_GRACE"
    ),
    "ClientWebSocketResponse._writer": "frames queued together go one by one (slower)",
    "WebSocketWriter._write_websocket_frame": "frames queued together go one by one (slower)",
    "WebSocketWriter.transport": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol": "frames queued together go one by one (slower)",
    "WebSocketWriter._output_size": "frames queued together go one by one (slower)",
    "WebSocketWriter._limit": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol._paused": "frames queued together go one by one (slower)",
    "WebSocketWriter.protocol._drain_helper": "frames queued together go one by one (slower)",
}


async def echo_server(aiohttp_server: Any, received: list[str]) -> str:
    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            received.append(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return f"ws://127.0.0.1:{server.port}/"


async def test_every_private_aiohttp_name_we_use_still_exists(aiohttp_server: Any) -> None:
    url = await echo_server(aiohttp_server, [])
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        try:
            seams = private_seams(ws=transport._ws, session=session)
        finally:
            await transport.close()
    assert set(seams) == set(WHAT_DEGRADES), "private_seams() and this test disagree"
    missing = [name for name, present in seams.items() if not present]
    assert not missing, (
        f"aiohttp {aiohttp.__version__} no longer has: "
        + "; ".join(f"{name} ({WHAT_DEGRADES[name]})" for name in missing)
        + ". Update nexus_reactive/aiohttp_transport.py (the fallbacks keep the client working)."
    )


async def test_without_the_private_writer_batches_still_arrive_in_order(
    aiohttp_server: Any,
) -> None:
    received: list[str] = []
    url = await echo_server(aiohttp_server, received)
    async with open_session() as session:
        transport = await open_transport(session, url, headers={})
        transport._batcher = None  # what an aiohttp without the private names gets
        frames = [f'{{"n": {n}}}'.encode() for n in range(50)]
        await transport.send_batch(frames)
        await wait_for(lambda: len(received) == 50)
        await transport.close()
    assert received == [f.decode() for f in frames]


async def test_the_redirect_hook_is_public_api() -> None:
    # The refusal of redirects relies on TraceConfig.on_request_redirect, public since
    # aiohttp 3.0, firing before any request to the Location (tests/test_hostile_servers.py).
    assert hasattr(aiohttp.TraceConfig(), "on_request_redirect")
    assert hasattr(aiohttp, "TraceRequestRedirectParams")


PRIVATE = {"_retry_connection", "_write_websocket_frame", "_output_size", "_limit", "_paused"}
PRIVATE |= {"_drain_helper"}


@pytest.mark.parametrize(
    "module",
    sorted(
        p
        for p in Path(nexus_reactive.__file__).parent.rglob("*.py")
        if p.name != "aiohttp_transport.py" and "server" not in p.parts
    ),
    ids=lambda p: p.name,
)
def test_no_module_but_transport_touches_aiohttp_private_names(module: Path) -> None:
    tree = ast.parse(module.read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in PRIVATE
        # A module's own attribute of the same name (store's self._limit) is not aiohttp's.
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    }
    used |= {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in PRIVATE
    }
    assert not used, (
        f"{module.name} uses aiohttp private names {sorted(used)}: "
        "keep them in aiohttp_transport.py"
    )
