"""Fault-injection TCP proxy for integration tests over real loopback sockets.

:class:`FaultProxy` sits between a (WebSocket) client and a server and forwards raw
bytes in 64 KiB chunks. The faults it injects, and what each one simulates:

* :meth:`FaultProxy.cut` -- resets every live connection (TCP RST to the client, the
  upstream side closed too): a crashed server, a NAT / load balancer dropping state.
* :meth:`FaultProxy.blackhole` -- silently swallows bytes in both directions while the
  sockets stay open: a half-open link, laptop sleep, a silent partition that only
  heartbeats / timeouts can detect. Data swallowed meanwhile is lost for good.
* :meth:`FaultProxy.refuse` -- new connections are accepted and reset at once: a server
  that is down behind a port that is still open (connect "works", then fails).
* :meth:`FaultProxy.stop_listening` / :meth:`FaultProxy.resume_listening` -- the port
  really refuses connections (ECONNREFUSED), then listens again on the same port: a
  restarting server.
* :attr:`FaultProxy.latency` -- delays every forwarded chunk, order kept per direction:
  a slow or distant link.
* :meth:`FaultProxy.drop_after` -- forwards only ``n`` more bytes downstream, then
  closes the client side mid-stream: a connection dying in the middle of a frame.

:func:`wait_for` (from :mod:`tests.waiting`, re-exported here) polls a condition with a
deadline; use it instead of fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Self

from .waiting import wait_for

__all__ = ["CHUNK_SIZE", "FaultProxy", "wait_for"]

CHUNK_SIZE = 64 * 1024
_QUEUE_SIZE = 16  # chunks buffered per direction (bounds memory under latency)

_Item = tuple[float, bytes] | Literal["eof", "drop"]


class _Dropped(Exception):
    """Raised inside a connection handler once the ``drop_after`` budget is spent."""


@dataclass(eq=False)
class _Conn:
    """One proxied connection: the client-facing writer, the upstream writer, its task."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None

    def reset(self) -> None:
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Abort ``writer``'s transport so that the peer sees a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _finish(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close (gracefully, flushing) or reset ``writer`` and wait until its socket is gone."""
    if reset:
        _reset(writer)
    else:
        writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except TimeoutError:  # peer not reading: give up flushing
        writer.transport.abort()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except OSError:
        pass


class FaultProxy:
    """TCP proxy on ``127.0.0.1`` forwarding to ``target_host:target_port``, with faults."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        #: Seconds added to every forwarded chunk, in both directions.
        self.latency: float = 0.0
        #: Connections accepted for forwarding so far (refused ones are not counted).
        self.connections = 0
        #: Connections reset on accept because :meth:`refuse` was on.
        self.refused_connections = 0
        #: Listening port (0 until :meth:`start`); kept across stop/resume_listening.
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blackhole = False
        self._refuse = False
        self._closing = False
        self._drop_budget: int | None = None

    @property
    def open_connections(self) -> int:
        """Number of proxied connections currently open."""
        return len(self._conns)

    def url(self, path: str = "/") -> str:
        """WebSocket URL pointing at the proxy, e.g. ``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/{path.lstrip('/')}"

    async def start(self) -> None:
        """Start listening (on a free port the first time, then on the same port)."""
        if self._server is None:
            self._closing = False
            self._server = await asyncio.start_server(self._on_accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop_listening(self) -> None:
        """Close the listening socket: new connects get ECONNREFUSED. Live ones go on."""
        if self._server is not None:
            self._server.close()  # closes the listening socket synchronously
            self._server = None

    async def resume_listening(self) -> None:
        """Listen again on the same :attr:`port`."""
        await self.start()

    def blackhole(self, on: bool = True) -> None:
        """Swallow (not forward) all bytes in both directions while ``on``."""
        self._blackhole = on

    def refuse(self, on: bool = True) -> None:
        """While ``on``, reset every new connection right after accepting it."""
        self._refuse = on

    def drop_after(self, n_bytes_downstream: int | None) -> None:
        """Forward only ``n`` more bytes server->client (one budget, shared by all
        connections); the chunk that exhausts it is truncated, then that connection's
        client side is closed (FIN after the truncated data), upstream too.
        One-shot: the budget is cleared once spent. ``None`` cancels it."""
        self._drop_budget = n_bytes_downstream

    async def cut(self) -> None:
        """Reset every current connection (RST to the client, upstream closed too)."""
        conns = list(self._conns)
        for conn in conns:
            conn.reset()
            if conn.task is not None:
                conn.task.cancel()
        await asyncio.gather(*(c.task for c in conns if c.task), return_exceptions=True)

    async def close(self) -> None:
        """Stop listening, reset every connection and await every task started."""
        self._closing = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        await self.cut()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals ---------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A plain (non-coroutine) callback, so asyncio starts no task we do not track.
        if self._refuse or self._closing:
            self.refused_connections += 1
            self._spawn(_finish(writer, reset=True))
            return
        self.connections += 1
        conn = _Conn(writer)
        self._conns.add(conn)
        conn.task = self._spawn(self._serve(conn, reader))

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        reset = True  # unless both directions end with a clean EOF (or a drop)
        try:
            up_reader, conn.upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            up: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_SIZE)
            down: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_SIZE)
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(reader, up, downstream=False))
                tg.create_task(self._write(up, conn.upstream))
                tg.create_task(self._read(up_reader, down, downstream=True))
                tg.create_task(self._write(down, conn.client))
            reset = False
        except* _Dropped:
            reset = False
        except* OSError:
            pass
        finally:
            self._conns.discard(conn)
            await _finish(conn.client, reset=reset)
            if conn.upstream is not None:
                await _finish(conn.upstream, reset=reset)

    async def _read(
        self, src: asyncio.StreamReader, queue: asyncio.Queue[_Item], *, downstream: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        while data := await src.read(CHUNK_SIZE):
            if self._blackhole:
                continue
            budget = self._drop_budget if downstream else None
            if budget is not None:
                data = data[:budget]
                self._drop_budget = budget - len(data) or None
            await queue.put((loop.time() + self.latency, data))
            if budget is not None and budget == len(data):
                await queue.put("drop")
                return
        await queue.put("eof")

    async def _write(self, queue: asyncio.Queue[_Item], dst: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item == "drop":
                raise _Dropped
            if item == "eof":
                if dst.can_write_eof():
                    dst.write_eof()
                return
            due, data = item
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            if data:
                dst.write(data)
                await dst.drain()
