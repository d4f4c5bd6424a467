"""The bench's lean ask server (``bench/server_apps.py``), over real loopback sockets:
it answers every ask, whatever else the client's read of the socket carried (it writes
its answers in batches, so a batch must never wait behind a control frame)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import aiohttp
import pytest

from bench import servers
from nexus_reactive.client_frames import frame_batch, mask_python
from nexus_reactive.testing import EVENTUALLY

KEY = "bench-lean-key"


@pytest.fixture(scope="module")
def lean() -> Iterator[servers.ServerProcess]:
    server = servers.start_lean(KEY)
    try:
        yield server
    finally:
        server.stop()


def ping_frame(payload: bytes) -> bytes:
    """A client's (masked) ping frame."""
    key = os.urandom(4)
    data = bytearray(payload)
    mask_python(key, data)
    return bytes([0x89, 0x80 | len(payload)]) + key + bytes(data)


async def test_asks_followed_by_a_ping_in_the_same_read_are_answered(
    lean: servers.ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(lean.url, headers={"x-api-key": KEY})
        try:
            asks = [
                json.dumps({"type": "ask", "id": f"a{i}", "payload": {"query": "q"}}).encode()
                for i in range(3)
            ]
            # One write: the asks and a ping reach the server in one read of its socket,
            # as a heartbeat's ping sent right after an ask can.
            transport = ws._writer.transport  # type: ignore[attr-defined]
            transport.write(frame_batch(asks, mask_python) + ping_frame(b"hb"))
            ids = []
            async with asyncio.timeout(EVENTUALLY):
                while len(ids) < 3:
                    msg = await ws.receive()
                    assert msg.type is aiohttp.WSMsgType.TEXT, msg
                    answer = json.loads(msg.data)
                    assert answer["type"] == "response"
                    ids.append(answer["id"])
            assert ids == ["a0", "a1", "a2"]
        finally:
            await ws.close()


async def test_a_wrong_key_is_refused(lean: servers.ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(lean.url, headers={"x-api-key": "wrong"})
        assert refused.value.status == 401
