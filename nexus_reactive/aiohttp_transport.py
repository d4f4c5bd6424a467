"""The aiohttp WebSocket transport: the only module that touches sockets.

It implements :class:`nexus_reactive.transport.Transport`, and is imported on the first
connection (not by ``import nexus_reactive``: aiohttp is most of the import time).

It opens one connection (mapping every aiohttp and OS failure to the library's
own errors, here and in :mod:`.failures`, nowhere else), writes frames, and runs
the tight receive loop that hands each text frame's bytes to a callback. Frames
stay bytes end to end (``decode_text=False``), so msgspec decodes them without a
str copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from .aiohttp_seams import (
    RETRY_ATTR,
    batch_writer,
    data_hook_available,
    drain,
    expire,
    hook_data_received,
    mask,
    parsed_queue,
    private_seams,
    response_header,
)
from .client_frames import frame_batch
from .config_checks import ProxyUrl
from .core.opening import AUTH_HEADER
from .errors import NexusConnectionError, ProtocolError
from .failures import ended, failure, refuse_redirect, subprotocol_refused
from .heartbeat import Heartbeat
from .proxies import is_socks, proxy_headers, socks_connector
from .tls_hints import scheme_hint

__all__ = ["AiohttpTransport", "open_session", "open_transport", "private_seams"]

log = logging.getLogger("nexus_reactive.transport")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
#: Seconds a connection refused after the upgrade (its subprotocol) waits for the close.
_REFUSAL_CLOSE_WAIT = 1.0
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


def _each(
    on_frame: Callable[[bytes], NexusConnectionError | None],
) -> Callable[[list[bytes]], NexusConnectionError | None]:
    """A batch handler that calls ``on_frame`` for each frame, until one returns an error."""

    def on_frames(frames: list[bytes]) -> NexusConnectionError | None:
        for frame in frames:
            stop = on_frame(frame)
            if stop is not None:
                return stop
        return None

    return on_frames


class AiohttpTransport:
    """One open WebSocket connection, over aiohttp."""

    __slots__ = (
        "_batcher",
        "_heartbeat",
        "_queue",
        "_touch",
        "_ws",
        "auth",
        "handed",
        "on_pong",
        "subprotocol",
    )

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        auth: str | None = None,
        subprotocol: str | None = None,
        heartbeat: float | None = None,
    ) -> None:
        self._ws = ws
        # Our heartbeat (heartbeat.py), told of any data by aiohttp's protocol (else, that
        # hook failing, of each message by the receive loop: coarser, blind to pongs).
        self._heartbeat: Heartbeat | None = None
        self._touch: Callable[[], None] | None = None
        if heartbeat is not None:
            beat = self._heartbeat = Heartbeat(heartbeat, self._ping_empty, self._expire)
            if not hook_data_received(ws, beat.touch):
                self._touch = beat.touch
        # Compressed connections write frame by frame (aiohttp compresses in send_frame).
        self._batcher: Any = batch_writer(ws)
        self._queue = parsed_queue(ws)
        self.auth = auth
        #: The subprotocol the server chose (``None``: none offered).
        self.subprotocol = subprotocol
        self.on_pong: Callable[[bytes], None] | None = None  #: pongs, with autoping=False
        #: Frames handed to the socket so far. A send cancelled while it waits to drain
        #: has handed its frame over already: the sender reads this to tell, so that
        #: the frame is neither counted as waiting nor written again.
        self.handed = 0

    @property
    def compressed(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return bool(self._ws.compress)

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, frame: bytes) -> None:
        """Write one text frame (UTF-8 JSON bytes)."""
        writer = self._batcher  # None when compressing: aiohttp compresses in send_frame
        if writer is None or writer._closing:
            await self._ws.send_frame(frame, _TEXT)  # the public way (and its errors)
            self.handed += 1  # (cancelled inside send_frame: not known, so not counted)
            return
        # What send_frame does for an uncompressed frame, without its coroutines.
        writer._write_websocket_frame(frame, _TEXT, 0)
        self.handed += 1
        if writer._output_size > writer._limit:
            await drain(writer)

    async def ping(self, payload: bytes) -> None:
        """Send a WebSocket ping; its pong goes to :attr:`on_pong` (``autoping=False``)."""
        await self._ws.ping(payload)

    def _ping_empty(self) -> Coroutine[Any, Any, None]:
        return self._ws.ping(b"")  # (an empty payload: not a metrics probe's)

    def _expire(self) -> None:
        """The heartbeat's ping went unanswered: end the link as aiohttp's would."""
        expire(self._ws, aiohttp.ServerTimeoutError("no pong within the heartbeat"))

    async def send_batch(self, frames: list[bytes]) -> None:
        """Write several text frames, in order, with one write to the socket.

        One ``send()`` system call per frame is most of the cost of sending on
        loopback; frames queued together go together.
        """
        writer = self._batcher
        if len(frames) == 1:
            await self.send(frames[0])
            return
        if writer is None or writer._closing:
            for frame in frames:
                await self._ws.send_frame(frame, _TEXT)
                self.handed += 1
            return
        if writer.transport.is_closing():  # as aiohttp's writer says it
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        self._write(writer, frame_batch(frames, mask), len(frames))
        if writer._output_size > writer._limit:
            await drain(writer)

    def write_now(self, frames: list[bytes]) -> bool:
        """Write several text frames in one write to the socket, without waiting, if
        the socket is not behind (flow control has not paused writing); else write
        nothing and return ``False``.

        The sender writes a long run of asks this way from the task that made them,
        so the server starts on them while the rest are made. A write that puts the
        socket behind pauses writing: the next one waits, in the writer task.
        """
        writer = self._batcher
        if writer is None or writer._closing or writer.protocol._paused:
            return False
        if writer.transport.is_closing():
            return False
        self._write(writer, frame_batch(frames, mask), len(frames))
        return True

    def _write(self, writer: Any, data: bytes, frames: int) -> None:
        writer.transport.write(data)
        self.handed += frames
        writer._output_size += len(data)

    async def pump(
        self,
        on_frame: Callable[[bytes], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
        on_first: Callable[[bytes], NexusConnectionError | None] | None = None,
    ) -> NexusConnectionError:
        """Receive until the connection ends; return why it ended.

        Args:
            on_frame: called with each text frame's bytes, in order. Returning an
                error ends the connection with that error.
            on_invalid: called for a frame the protocol does not allow (binary).
            on_first: called instead of ``on_frame`` for the first text frame.
        """
        return await self._pump(_each(on_frame), on_invalid, on_first)

    async def pump_batches(
        self,
        on_frames: Callable[[list[bytes]], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
        on_first: Callable[[bytes], NexusConnectionError | None] | None = None,
    ) -> NexusConnectionError:
        """:meth:`pump`, handing ``on_frames`` the text frames one socket read brought,
        in order, in one list (of one frame, or of hundreds in a flood)."""
        return await self._pump(on_frames, on_invalid, on_first)

    async def _pump(
        self,
        on_frames: Callable[[list[bytes]], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
        first: Callable[[bytes], NexusConnectionError | None] | None,
    ) -> NexusConnectionError:
        ws: Any = self._ws
        receive = ws.receive
        queue = self._queue
        touch = self._touch
        while True:
            msg = await receive()
            if touch is not None:
                touch()
            kind = msg.type
            if kind is _TEXT:
                if first is None:
                    frames = [msg.data]
                else:
                    stop = first(msg.data)
                    first = None
                    if stop is not None:
                        return stop
                    frames = []
                # One socket read parses into many frames: read() takes those queued at
                # once, without receive()'s coroutine each (at most aiohttp's queue limit
                # and one read's worth). Anything else goes by receive(). The state is read
                # once per batch: nothing here awaits anything that can suspend (the queue
                # is not empty), so nothing can close it meanwhile.
                if queue is not None and not ws._closing and not ws._closed:
                    buffer, read = queue
                    while buffer and buffer[0][0][0] is _TEXT:  # message[0]: its type
                        frames.append((await read())[1])  # [1]: its data
                if frames:
                    stop = on_frames(frames)
                    if stop is not None:
                        return stop
                del frames, msg  # a read's frames are not held while the next is awaited
            elif kind is _BINARY:
                on_invalid(
                    ProtocolError(
                        "received a binary frame; the protocol uses text frames only",
                        bytes(msg.data[:64]),
                    )
                )
            elif kind is WSMsgType.PONG and self.on_pong is not None:  # autoping=False
                self.on_pong(msg.data)
            elif kind is WSMsgType.PING:  # autoping=False: aiohttp answers them otherwise
                await self._ws.pong(msg.data)
            elif kind in _ENDED:
                return self._why_ended(kind, msg.data, msg.extra)

    async def receive_frame(self) -> bytes:
        """Receive one text frame; used by handshakes, before the receive loop runs.

        Raises:
            NexusConnectionError: the connection ended first.
        """
        while True:
            msg = await self._ws.receive()
            if msg.type is _TEXT:
                data: bytes = msg.data
                return data
            if msg.type is WSMsgType.PING:
                await self._ws.pong(msg.data)
            elif msg.type in _ENDED:
                raise self._why_ended(msg.type, msg.data, msg.extra)

    def _why_ended(self, kind: WSMsgType, data: object, extra: object) -> NexusConnectionError:
        ws = self._ws
        if self._heartbeat is not None:
            self._heartbeat.stop()
        # An ERROR message carries its exception (a frame over the limit, bad deflate data).
        exc = ws.exception() or (data if isinstance(data, BaseException) else None)
        return ended(kind, data, extra, exc, ws.close_code, bool(ws.compress))

    async def close(self, code: int = 1000) -> None:
        """Close the connection (idempotent); never raises."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            await self._ws.close(code=code)


def open_session(proxy: ProxyUrl | None = None) -> aiohttp.ClientSession:
    """A client session for one service's connection attempts.

    With a SOCKS ``proxy``, every connection of the session goes through it (an HTTP
    proxy is per request: :func:`open_transport`'s ``proxy``).

    It never follows a redirect (see :func:`open_transport`), and each attempt is
    exactly one socket: aiohttp would otherwise re-send an idempotent request (the
    upgrade) once when the connection is reset before the response, and that retry
    must be counted and backed off by our policy.
    """
    trace = aiohttp.TraceConfig()
    trace.on_request_redirect.append(refuse_redirect)
    connector = socks_connector(proxy) if proxy is not None and is_socks(proxy) else None
    session = aiohttp.ClientSession(trace_configs=[trace], connector=connector)
    if hasattr(session, RETRY_ATTR):
        setattr(session, RETRY_ATTR, False)
    return session


async def open_transport(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    ssl: _ssl.SSLContext | bool = True,
    heartbeat: float | None = None,
    connect_timeout: float = 10.0,
    max_message_size: int = 4 * 1024 * 1024,
    deadline: float | None = None,
    proxy: ProxyUrl | None = None,
    compression: bool = False,
    subprotocols: Sequence[str] = (),
    autoping: bool = True,
) -> AiohttpTransport:
    """Open a WebSocket to ``url``.

    Args:
        deadline: the loop time by which the attempt must be open; by default
            ``connect_timeout`` from now (``connect_timeout`` names it in errors).
        proxy: the proxy of this attempt. An HTTP one is used here; a SOCKS one must
            be the session's (:func:`open_session`), and is named in errors.
        compression: offer permessage-deflate; the server decides.
        subprotocols: offered in order of preference; the server must choose one.
        autoping: aiohttp answers pings and drops pongs. ``False``: the receive loop
            answers pings and hands pongs to ``on_pong`` (to time our own pings).

    Raises:
        AuthenticationError: the server refused the credentials (HTTP 401/403).
        RedirectRefused: the server redirected the upgrade (with a session from
            :func:`open_session`); nothing was sent to the ``Location``.
        NexusConnectionError: any other failure, marked retryable or not per the
            policy table; a proxy's refusal of its credentials (407), a server
            that chose no subprotocol of ours, and a ``ws://`` URL of a server that
            speaks TLS (:mod:`.tls_hints`) are fatal.
    """
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + connect_timeout
    ours = heartbeat is not None and data_hook_available()
    via: dict[str, Any] = {}
    if proxy is not None and not is_socks(proxy):
        # Credentials in a header, never in a URL that an error could quote.
        auth = proxy_headers(proxy)
        via = {"proxy": URL.build(scheme=proxy.scheme, host=proxy.host, port=proxy.port)}
        via["proxy_headers"] = auth
        if URL(url).scheme == "ws":
            # No tunnel for ws://: the upgrade request itself goes to the proxy.
            headers = {**headers, **auth}
    try:
        async with asyncio.timeout_at(deadline):
            ws = await session.ws_connect(
                url,
                headers=headers,
                ssl=ssl,
                heartbeat=None if ours else heartbeat,  # ours: cheaper per read, below
                max_msg_size=max_message_size,
                decode_text=False,
                autoping=autoping,
                compress=15 if compression else 0,
                protocols=tuple(subprotocols),
                **via,
            )
    except Exception as exc:
        # A URL of the wrong scheme; not through a proxy, which a probe would skip.
        scheme = await scheme_hint(exc, url, deadline) if proxy is None else None
        raise scheme or failure(exc, url, proxy, connect_timeout, ssl=ssl) from None
    chosen = response_header(ws, "Sec-WebSocket-Protocol")
    if chosen is None and ws.protocol is not None:
        chosen = ws.protocol  # aiohttp's view, when the private header is out of reach
    refused = subprotocol_refused(chosen, subprotocols)
    if refused is not None:
        # Failed (RFC 6455: 1002); a server that does not answer the close is not waited for.
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with asyncio.timeout(_REFUSAL_CLOSE_WAIT):
                await ws.close(code=1002)
        raise refused
    beat = heartbeat if ours else None
    return AiohttpTransport(ws, response_header(ws, AUTH_HEADER), chosen, beat)
