"""An ask cancelled while its write waits for the socket to drain (the server stopped
reading, the buffers are full): the frame was handed to the socket already, so it
leaves the outbox and the demand at once, reaches the server exactly once when the
server reads again, and is never written a second time."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Self

import pytest

from nexus_reactive import AskRequest, AskResponse, ResponseMessage, WebSocketService

from .conftest import ServerFactory
from .waiting import wait_for

#: Bigger than a loopback socket's send buffer can grow to (4 MiB on Linux) plus the
#: held side's small receive buffer: the write cannot go out whole, so it waits to drain.
BIG = 8 << 20


class HeldProxy:
    """A TCP relay on loopback that stops reading from the client while :meth:`hold`
    is on: the client's writes pile up in its socket buffers and then in its transport,
    and a write waits to drain. Nothing is lost: what waits flows on at :meth:`release`.
    Its receive buffer is small, so that little fills it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._reading = asyncio.Event()
        self._reading.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def hold(self) -> None:
        self._reading.clear()

    def release(self) -> None:
        self._reading.set()

    async def __aenter__(self) -> Self:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted ones too
        listener.bind(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        self._server = await asyncio.start_server(self._accept, sock=listener, limit=4096)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.append(up_writer)
        await asyncio.gather(
            self._pipe(reader, up_writer, self._reading.wait),
            self._pipe(up_reader, writer, None),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        gate: Callable[[], Awaitable[object]] | None,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while True:
                if gate is not None:
                    await gate()
                data = await src.read(4096)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        dst.close()


def recording(queries: list[str]) -> Callable[[AskRequest], Awaitable[AskResponse]]:
    async def engine(request: AskRequest) -> AskResponse:
        queries.append(request.query[:8])
        return AskResponse(answer=f"re: {request.query[:8]}")

    return engine


@pytest.mark.parametrize("compression", [False, True])
async def test_an_ask_cancelled_while_its_write_waits_to_drain_is_counted_once_and_sent_once(
    start_nexus: ServerFactory, compression: bool
) -> None:
    # Compressed, aiohttp writes the frame itself (in a task of its own, for a big one),
    # and the transport cannot tell when: the frame goes back to the outbox, and the
    # ask's abandon takes it out again. Either way: counted right, sent once.
    queries: list[str] = []
    nexus = await start_nexus(
        engine=recording(queries), max_message_size=3 * BIG, max_query_length=3 * BIG
    )
    async with HeldProxy(nexus.port) as proxy:
        config = nexus.config(
            url=proxy.url(), request_timeout=None, lazy=True, compression=compression
        )
        async with WebSocketService(config) as service:
            await service.connect()
            depths: list[int] = []
            service.outbox_depth.subscribe(depths.append)
            lazy, sender = service._lazy, service._connection.sender
            assert lazy is not None
            assert getattr(sender._transport, "compressed", None) is compression

            proxy.hold()  # the server reads nothing more: the write waits to drain
            noise = base64.b64encode(os.urandom(BIG)).decode()  # deflate cannot shrink it
            asking = asyncio.create_task(service.ask("big-one " + noise))
            await wait_for(lambda: sender._writing, message="the ask's write waits to drain")
            assert service.outbox_depth.value == 0 and not lazy.timing  # on its way, needed
            asking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asking

            # Handed to the socket already: nothing waits in the outbox, nothing needs
            # the connection (the grace runs), and watchers were told.
            assert service.outbox_depth.value == 0
            assert depths[-1] == 0
            assert len(service._core.pending) == 0
            assert lazy.timing, "the cancelled ask still counts as demand"

            answers: list[ResponseMessage] = []  # (a subscriber is demand: only now)
            service.responses.subscribe(answers.append)
            proxy.release()  # the server reads again: the frame arrives, once
            await wait_for(lambda: nexus.stats.asks_received == 1)
            await wait_for(lambda: len(answers) == 1)  # its late answer, delivered once
            assert (await service.ask("after")).answer == "re: after"
            assert queries == ["big-one ", "after"]
            assert nexus.stats.asks_received == 2  # the big one was not written again
            assert [a.payload.answer for a in answers] == ["re: big-one ", "re: after"]
