"""A fault-injection TCP proxy, to put between a client and any (WebSocket) server.

:class:`FaultProxy` forwards raw bytes in 64 KiB chunks over real loopback sockets.
The faults it injects, and what each one simulates:

* :meth:`FaultProxy.cut` -- resets every live connection (TCP RST to the client, the
  upstream side closed too): a crashed server, a NAT / load balancer dropping state.
* :meth:`FaultProxy.close_with` -- sends the client a WebSocket close frame with a code
  (1012 "service restart", 4000-4999 for your app's own, ...), between two server
  frames, then closes: a server that ends the connection on purpose.
* :meth:`FaultProxy.blackhole` -- silently swallows bytes in both directions while the
  sockets stay open: a half-open link, laptop sleep, a silent partition that only
  heartbeats / timeouts can detect. Data swallowed meanwhile is lost for good.
* :meth:`FaultProxy.stall` -- holds bytes in both directions (nothing is lost) until
  the stall ends: a frozen server or a congested link.
* :attr:`FaultProxy.latency` -- delays every forwarded chunk, order kept per direction:
  a slow or distant link.
* :meth:`FaultProxy.drop_after` -- forwards only ``n`` more bytes downstream, then
  closes the client side: a connection dying in the middle of a frame.
* :meth:`FaultProxy.refuse_upgrade` -- answers new connections' upgrade requests itself
  with an HTTP status (503, 401, 429 ...): a gateway or a server that turns clients away.
* :meth:`FaultProxy.refuse` -- new connections are accepted and reset at once: a server
  that is down behind a port that is still open (connect "works", then fails).
* :meth:`FaultProxy.stop_listening` / :meth:`FaultProxy.resume_listening` -- the port
  really refuses connections (ECONNREFUSED), then listens again on the same port: a
  restarting server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from .wire import FrameBoundaries, close_frame, finish, http_response, read_request_head, reset

__all__ = ["CHUNK_SIZE", "CLOSE_GRACE", "FaultProxy"]

CHUNK_SIZE = 64 * 1024
_QUEUE_SIZE = 16  # chunks buffered per direction (bounds memory under latency)
#: Seconds :meth:`FaultProxy.close_with` waits for a server frame under way to end.
CLOSE_GRACE = 5.0

_Item = tuple[float, bytes] | Literal["eof", "drop"]


class _Dropped(Exception):
    """Raised inside a connection handler to end it gracefully (drop_after, close_with)."""


@dataclass(eq=False)
class _Conn:
    """One proxied connection: its writers, its task, and where the server's frames end."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    task: asyncio.Task[None] | None = None
    down: asyncio.Queue[_Item] | None = None
    frames: FrameBoundaries = field(default_factory=FrameBoundaries)
    #: A close frame to send at the next frame boundary (then the connection ends).
    closing: bytes | None = None

    def reset(self) -> None:
        reset(self.client)
        if self.upstream is not None:
            reset(self.upstream)


class FaultProxy:
    """TCP proxy on ``127.0.0.1`` forwarding to ``target_host:target_port``, with faults.

    Use it as an async context manager (or :meth:`start` then :meth:`close`)::

        async with FaultProxy("127.0.0.1", server_port) as proxy:
            config = WebSocketConfig(url=proxy.url(), api_key=key)
            ...
            await proxy.cut()
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        #: Seconds added to every forwarded chunk, in both directions.
        self.latency: float = 0.0
        #: Connections accepted for forwarding so far (refused ones are not counted).
        self.connections = 0
        #: Connections reset on accept because :meth:`refuse` was on.
        self.refused_connections = 0
        #: Upgrade requests answered with an HTTP status by :meth:`refuse_upgrade`.
        self.refused_upgrades = 0
        #: Listening port (0 until :meth:`start`); kept across stop/resume_listening.
        self.port = 0
        self._server: asyncio.Server | None = None
        self._conns: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._blackhole = False
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._refuse = False
        self._refusal: bytes | None = None
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

    def stall(self, on: bool = True) -> None:
        """While ``on``, forward nothing but keep every byte: they flow on when it ends.
        (Up to 16 chunks a direction are held; then the sender's TCP buffers fill.)"""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    def refuse(self, on: bool = True) -> None:
        """While ``on``, reset every new connection right after accepting it."""
        self._refuse = on

    def refuse_upgrade(
        self, status: int | None = 503, body: str = "", headers: dict[str, str] | None = None
    ) -> None:
        """Answer every new connection's upgrade request with HTTP ``status`` (and
        ``body``, ``headers``, e.g. ``{"Retry-After": "1"}``) instead of forwarding it.
        ``None`` forwards again. Live connections are not touched."""
        self._refusal = None if status is None else http_response(status, body, headers)

    def drop_after(self, n_bytes_downstream: int | None) -> None:
        """Forward only ``n`` more bytes server->client (one budget, shared by all
        connections); the chunk that exhausts it is truncated, then that connection's
        client side is closed (FIN after the truncated data), upstream too.
        One-shot: the budget is cleared once spent. ``None`` cancels it."""
        self._drop_budget = n_bytes_downstream

    async def close_with(self, code: int, reason: str = "") -> None:
        """Close every live WebSocket connection with ``code`` and ``reason``.

        The close frame goes to the client between two server frames (a frame under
        way is forwarded whole first), then both sides are closed (FIN). Returns once
        those connections are gone. Connections not (yet) upgraded are reset, and so
        is one whose frame under way has not ended after :data:`CLOSE_GRACE` seconds.
        """
        frame = close_frame(code, reason)
        conns = list(self._conns)
        for conn in conns:
            if not conn.frames.upgraded or conn.down is None:
                conn.reset()
                if conn.task is not None:
                    conn.task.cancel()
                continue
            conn.closing = frame
            if conn.frames.at_boundary:
                await conn.down.put((0.0, frame))
                await conn.down.put("drop")
        tasks = {c.task for c in conns if c.task}
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
        for conn in conns:  # a frame that never ends (or a stall): reset instead
            if conn.task in late:
                conn.reset()
                conn.task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

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
        self._flowing.set()
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
            self._spawn(finish(writer, reset_it=True))
            return
        if self._refusal is not None:
            self.refused_upgrades += 1
            self._spawn(self._answer(reader, writer, self._refusal))
            return
        self.connections += 1
        conn = _Conn(writer)
        self._conns.add(conn)
        conn.task = self._spawn(self._serve(conn, reader))

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, response: bytes
    ) -> None:
        try:
            await asyncio.wait_for(read_request_head(reader), 10.0)
            writer.write(response)
            await writer.drain()
        except (OSError, TimeoutError):
            pass
        await finish(writer, reset_it=False)

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        reset_it = True  # unless both directions end with a clean EOF (or a drop)
        try:
            up_reader, conn.upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            up: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_SIZE)
            down: asyncio.Queue[_Item] = asyncio.Queue(_QUEUE_SIZE)
            conn.down = down
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(reader, up, None))
                tg.create_task(self._write(up, conn.upstream))
                tg.create_task(self._read(up_reader, down, conn))
                tg.create_task(self._write(down, conn.client))
            reset_it = False
        except* _Dropped:
            reset_it = False
        except* OSError:
            pass
        finally:
            self._conns.discard(conn)
            await finish(conn.client, reset_it=reset_it)
            if conn.upstream is not None:
                await finish(conn.upstream, reset_it=reset_it)

    async def _read(
        self, src: asyncio.StreamReader, queue: asyncio.Queue[_Item], conn: _Conn | None
    ) -> None:
        """Read one direction into ``queue``; ``conn`` is given for server->client."""
        loop = asyncio.get_running_loop()
        while data := await src.read(CHUNK_SIZE):
            if self._blackhole:
                continue
            if conn is not None and conn.closing is not None:
                if conn.frames.at_boundary:
                    return  # close_with queued the close frame: forward nothing more
                data = data[: conn.frames.feed(data, stop_at_boundary=True)]
                await queue.put((loop.time() + self.latency, data + conn.closing))
                await queue.put("drop")
                return
            if conn is not None:
                conn.frames.feed(data)
            budget = self._drop_budget if conn is not None else None
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
            await self._flowing.wait()
            if data:
                dst.write(data)
                await dst.drain()
