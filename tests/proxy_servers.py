"""Real proxies on loopback for the network tests: an HTTP proxy (``CONNECT`` tunnels,
and absolute-form requests for ``ws://``) and a SOCKS5 proxy, each counting what it
carries and checking credentials, and able to vanish mid-tunnel (:meth:`cut`).

They only ever connect to loopback targets: a test can never make them reach out.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Self

__all__ = ["HttpProxy", "Socks5Proxy"]

_LOOPBACK_NAMES = ("localhost", "localhost.")


def _loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Base:
    user: str | None = None
    password: str | None = None
    port: int = 0
    #: Tunnels opened (CONNECT, or SOCKS CONNECT), and absolute-form requests forwarded.
    tunnels: int = 0
    forwarded: int = 0
    #: Connections refused for their credentials (407, or a SOCKS auth failure).
    refused: int = 0
    #: Where each tunnel or request went, as ``host:port``.
    targets: list[str] = field(default_factory=list)
    #: Tunnels and requests whose target could not be reached.
    unreachable: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._guarded(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _tunnel(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        host: str,
        port: int,
        first: bytes = b"",
        reply: bytes = b"",
        unreachable: bytes = b"",
    ) -> None:
        assert _loopback(host), f"the test proxy only reaches loopback, not {host}"
        self.targets.append(f"{host}:{port}")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            self.unreachable += 1
            if unreachable:  # the proxy's own answer: it could not reach the target
                writer.write(unreachable)
                await writer.drain()
            return
        self._writers.add(up_writer)
        try:
            if reply:
                writer.write(reply)
            if first:
                up_writer.write(first)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.close()

    def cut(self) -> None:
        """Vanish: reset every live connection (client and upstream sides)."""
        for writer in list(self._writers):
            _abort(writer)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


@dataclass(eq=False)
class HttpProxy(_Base):
    """An HTTP proxy: ``CONNECT host:port`` opens a tunnel; an absolute-form request
    (``GET http://host:port/path``, what a client sends for ``ws://``) is forwarded.

    With ``user``/``password``, a request without the right ``Proxy-Authorization``
    gets ``407``. A target it cannot reach gets the proxy's own ``unreachable_status``
    (502 Bad Gateway, as nginx; squid says 503), with ``retry_after`` as ``Retry-After``
    if set. ``heads`` keeps every request head the proxy read (what it saw).
    """

    heads: list[bytes] = field(default_factory=list)
    unreachable_status: int = 502
    retry_after: int | None = None

    def _unreachable(self) -> bytes:
        status = self.unreachable_status
        extra = b"" if self.retry_after is None else b"Retry-After: %d\r\n" % self.retry_after
        return b"HTTP/1.1 %d Proxy Error\r\n%bContent-Length: 0\r\nConnection: close\r\n\r\n" % (
            status,
            extra,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if self.user is not None:
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {token}":
                self.refused += 1
                writer.write(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n'
                    b"Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                await writer.drain()
                return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self.tunnels += 1
            reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
            await self._tunnel(
                reader,
                writer,
                host.strip("[]"),
                int(port),
                reply=reply,
                unreachable=self._unreachable(),
            )
            return
        # Absolute form: GET http://host:port/path HTTP/1.1 -> forward the request as is.
        rest = target.split("://", 1)[1]
        authority = rest.split("/", 1)[0]
        host, _, port = authority.rpartition(":")
        self.forwarded += 1
        await self._tunnel(
            reader,
            writer,
            host.strip("[]"),
            int(port or 80),
            first=head,
            unreachable=self._unreachable(),
        )


@dataclass(eq=False)
class Socks5Proxy(_Base):
    """A SOCKS5 proxy (RFC 1928, CONNECT only; RFC 1929 user/password with ``user``)."""

    def url_with(self, user: str, password: str, scheme: str = "socks5") -> str:
        return f"{scheme}://{user}:{password}@127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        version, count = await reader.readexactly(2)
        assert version == 5
        methods = await reader.readexactly(count)
        wanted = 2 if self.user is not None else 0
        if wanted not in methods:
            writer.write(b"\x05\xff")
            self.refused += 1
            return
        writer.write(bytes([5, wanted]))
        if wanted == 2:
            _, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            (plen,) = await reader.readexactly(1)
            password = (await reader.readexactly(plen)).decode()
            if (user, password) != (self.user, self.password):
                self.refused += 1
                writer.write(b"\x01\x01")
                await writer.drain()
                return
            writer.write(b"\x01\x00")
        _, command, _, kind = await reader.readexactly(4)
        assert command == 1, "CONNECT only"
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        else:
            (length,) = await reader.readexactly(1)
            host = (await reader.readexactly(length)).decode()
        (port,) = struct.unpack("!H", await reader.readexactly(2))
        self.tunnels += 1
        reply = b"\x05\x00\x00\x01" + bytes(4) + struct.pack("!H", 0)
        await self._tunnel(reader, writer, host, port, reply=reply)
