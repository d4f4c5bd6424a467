"""The ceiling of an ask client on the library's own stack, for asks in flight.

:func:`ceiling_asker` is the least an ask client on aiohttp, msgspec and asyncio can
do: an id from a counter, a frame from two prebuilt halves, asks written ``RUN`` at a
time by the task that made the last of them and the rest at the end of the loop's turn
(one ``write`` each, masked by the library's own
:func:`~nexus_reactive.client_frames.frame_batch`), each answer decoded by msgspec
straight from aiohttp's queue of parsed frames and its future settled.

Writing runs while the answers of a read are still being handled keeps the server busy
meanwhile: written only at the end of the turn, the two sides take turns, and this
client idled 40% of the time at 100 in flight (~110,000 asks/s); in runs of 8, 16 or
32 it is busy ~95% of the time, and fastest in runs of 16. It keeps none
of the library's promises: no deadline, no reconnect, no resend, no duplicate memory,
no order, no streams, no validation, no error answers.

What it reaches with 100 asks in flight is the most any client with promises could
reach on the same machine and server: section b runs it beside ``service.ask``
(``100 in flight: service / ceiling``), and ``bench.instructions`` counts its
instructions per ask.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec

from nexus_reactive.aiohttp_seams import mask
from nexus_reactive.client_frames import frame_batch

from . import traffic
from .baselines import AskFn, stop_reader

__all__ = ["RUN", "ceiling_asker"]

#: Asks written together by the task that made the last of them.
RUN = 16


class _Answer(msgspec.Struct):
    id: str
    payload: dict[str, Any]


@asynccontextmanager
async def ceiling_asker(url: str, api_key: str) -> AsyncIterator[AskFn]:
    """A minimal ask client: see the module's docstring.

    Yields:
        ``ask()``: send one ask and wait for its answer's payload.
    """
    decode = msgspec.json.Decoder(_Answer).decode
    head = b'{"type":"ask","id":"'
    tail = b'","payload":{"query":' + msgspec.json.encode(traffic.QUERY) + b"}}"
    pending: dict[str, asyncio.Future[Any]] = {}
    loop = asyncio.get_running_loop()
    numbers = itertools.count()
    out: list[bytes] = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers={"x-api-key": api_key}) as ws,
    ):
        transport: Any = ws._writer.transport
        queue: Any = ws._reader  # aiohttp's parsed frames: (message, size) per frame

        def flush() -> None:
            if out:
                frames = out[:]
                out.clear()
                transport.write(frame_batch(frames, mask))

        async def read() -> None:
            take = queue.read
            while True:
                message = await take()
                if message[0] is not aiohttp.WSMsgType.TEXT:
                    return
                answer = decode(message[1])
                future = pending.pop(answer.id, None)
                if future is not None:
                    future.set_result(answer.payload)

        reader = asyncio.create_task(read())

        async def ask() -> object:
            ask_id = str(next(numbers))
            future: asyncio.Future[Any] = loop.create_future()
            pending[ask_id] = future
            if not out:  # the first since a write: the rest go at the end of the turn
                loop.call_soon(flush)
            out.append(b"".join((head, ask_id.encode(), tail)))
            if len(out) >= RUN:
                flush()  # (the flush scheduled meanwhile finds nothing, or later asks)
            return await future

        try:
            yield ask
        finally:
            await stop_reader(reader)
