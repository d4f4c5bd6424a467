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
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import aiohttp
from aiohttp import WSMsgType
from yarl import URL

from .client_frames import Mask, frame_batch, mask_python
from .config_checks import ProxyUrl
from .core.opening import AUTH_HEADER
from .errors import NexusConnectionError, ProtocolError
from .failures import ended, failure, refuse_redirect, subprotocol_refused
from .proxies import is_socks, proxy_headers, socks_connector

__all__ = ["AiohttpTransport", "open_session", "open_transport", "private_seams"]

log = logging.getLogger("nexus_reactive.transport")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
#: Seconds a connection refused after the upgrade (its subprotocol) waits for the close.
_REFUSAL_CLOSE_WAIT = 1.0
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
_mask: Mask
try:  # aiohttp's masking, in C (a batch is framed here: client_frames)
    from aiohttp._websocket.helpers import websocket_mask as _mask
except ImportError:  # moved by a release: the same masking, in Python
    _mask = mask_python


# aiohttp's private names this module relies on, and what happens without them. Each is
# feature-checked where it is used, with a public fallback; tests/test_transport_seams.py
# fails with a clear message when an aiohttp release renames one.
#: ClientSession: re-sends the upgrade once on a reset (fallback: it may, an extra try).
_RETRY_ATTR = "_retry_connection"
#: ClientWebSocketResponse -> WebSocketWriter: framing a batch in one write, and a lone
#: frame without send_frame's two coroutines (fallback: ``send_frame`` per frame).
_WRITER_ATTR = "_writer"
_WRITER_ATTRS: tuple[str, ...] = ("_write_websocket_frame", "transport", "protocol")
_WRITER_ATTRS += ("_closing", "_output_size", "_limit")
_PROTOCOL_ATTRS = ("_paused", "_drain_helper")
#: ClientWebSocketResponse -> its WebSocketDataQueue: text frames parsed already are taken
#: by ``read()`` while the connection is open (fallback: ``receive()`` per frame).
_READER_ATTR = "_reader"
_QUEUE_ATTRS = ("_buffer", "read")
_STATE_ATTRS = ("_closing", "_closed")
#: ClientWebSocketResponse -> the upgrade's ClientResponse: its headers (``x-nexus-auth``)
#: (fallback: the header is unknown, and a client without a key waits CHALLENGE_GRACE).
_RESPONSE_ATTR = "_response"


def private_seams(ws: object | None = None, session: object | None = None) -> dict[str, bool]:
    """Which of aiohttp's private names this module uses are present (for tests/diagnosis).

    Args:
        ws: an open ``ClientWebSocketResponse``, to check the batch-writing seam.
        session: a ``ClientSession``, to check the upgrade-retry switch.
    """
    seams: dict[str, bool] = {}
    if session is not None:
        seams[f"ClientSession.{_RETRY_ATTR}"] = hasattr(session, _RETRY_ATTR)
    if ws is not None:
        seams[f"ClientWebSocketResponse.{_RESPONSE_ATTR}"] = hasattr(
            getattr(ws, _RESPONSE_ATTR, None), "headers"
        )
        writer = getattr(ws, _WRITER_ATTR, None)
        seams[f"ClientWebSocketResponse.{_WRITER_ATTR}"] = writer is not None
        for name in _WRITER_ATTRS:
            seams[f"WebSocketWriter.{name}"] = writer is not None and hasattr(writer, name)
        protocol = getattr(writer, "protocol", None)
        for name in _PROTOCOL_ATTRS:
            seams[f"WebSocketWriter.protocol.{name}"] = hasattr(protocol, name)
        reader = getattr(ws, _READER_ATTR, None)
        seams[f"ClientWebSocketResponse.{_READER_ATTR}"] = reader is not None
        for name in _QUEUE_ATTRS:
            seams[f"WebSocketDataQueue.{name}"] = hasattr(reader, name)
        for name in _STATE_ATTRS:
            seams[f"ClientWebSocketResponse.{name}"] = hasattr(ws, name)
    return seams


def _response_header(ws: object, name: str) -> str | None:
    """A header of the upgrade response (``x-nexus-auth``), when aiohttp lets us read it."""
    headers = getattr(getattr(ws, _RESPONSE_ATTR, None), "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return value if isinstance(value, str) else None


def _batch_writer(ws: object) -> Any:
    """aiohttp's WebSocketWriter when every private name batching needs is there and
    the connection does not compress; else ``None`` (frames then go one by one)."""
    writer = getattr(ws, _WRITER_ATTR, None)
    # A client's writer masks (the batch is framed masked, as a client's must be).
    if writer is None or getattr(writer, "compress", True) or not getattr(writer, "use_mask", 0):
        return None
    if not all(hasattr(writer, name) for name in _WRITER_ATTRS):
        return None
    protocol = writer.protocol
    if not all(hasattr(protocol, name) for name in _PROTOCOL_ATTRS):
        return None
    return writer


async def _drain(writer: Any) -> None:
    """Flow control as aiohttp's send_frame does it, once the writer's output passed its limit."""
    writer._output_size = 0
    if writer.protocol._paused:
        await writer.protocol._drain_helper()


def _parsed_queue(ws: object) -> tuple[deque[Any], Callable[[], Awaitable[Any]]] | None:
    """aiohttp's queue of parsed frames (its deque and its ``read``) when every private
    name the receive loop's drain needs is there; else ``None`` (``receive()`` per frame)."""
    reader = getattr(ws, _READER_ATTR, None)
    buffer = getattr(reader, "_buffer", None)
    read = getattr(reader, "read", None)
    if not isinstance(buffer, deque) or read is None:
        return None
    if not all(isinstance(getattr(ws, name, None), bool) for name in _STATE_ATTRS):
        return None
    if aiohttp.WSMessage._fields[:2] != ("type", "data"):  # the loop indexes messages
        return None
    return buffer, read


class AiohttpTransport:
    """One open WebSocket connection, over aiohttp."""

    __slots__ = ("_batcher", "_queue", "_ws", "auth", "handed", "on_pong", "subprotocol")

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse[Literal[False]],
        auth: str | None = None,
        subprotocol: str | None = None,
    ) -> None:
        self._ws = ws
        # Compressed connections write frame by frame (aiohttp compresses in send_frame).
        self._batcher: Any = _batch_writer(ws)
        self._queue = _parsed_queue(ws)
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
            await _drain(writer)

    async def ping(self, payload: bytes) -> None:
        """Send a WebSocket ping; its pong goes to :attr:`on_pong` (``autoping=False``)."""
        await self._ws.ping(payload)

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
        real = writer.transport
        if real.is_closing():  # as aiohttp's writer says it
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")
        data = frame_batch(frames, _mask)
        real.write(data)
        self.handed += len(frames)
        writer._output_size += len(data)
        if writer._output_size > writer._limit:
            await _drain(writer)

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
        ws: Any = self._ws
        receive = ws.receive
        on_text = on_frame if on_first is None else on_first
        queue = self._queue
        while True:
            msg = await receive()
            kind = msg.type
            if kind is _TEXT:
                stop = on_text(msg.data)
                if stop is not None:
                    return stop
                on_text = on_frame
                if queue is None or ws._closing or ws._closed:
                    continue
                # One socket read parses into many frames: read() takes those queued at
                # once, without receive()'s coroutine each. Anything else goes by receive().
                # The state is read once per batch: nothing here awaits anything that can
                # suspend (the queue is not empty), so nothing can close it meanwhile.
                buffer, read = queue
                while buffer and buffer[0][0][0] is _TEXT:  # (message, size); message[0]: type
                    stop = on_frame((await read())[1])  # [1]: its data
                    if stop is not None:
                        return stop
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
        # An ERROR message carries its exception (a frame over the limit, bad deflate data).
        exc = ws.exception() or (data if isinstance(data, BaseException) else None)
        return ended(kind, data, extra, exc, ws.close_code, bool(ws.compress))

    async def close(self, code: int = 1000) -> None:
        """Close the connection (idempotent); never raises."""
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
    if hasattr(session, _RETRY_ATTR):
        setattr(session, _RETRY_ATTR, False)
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
            policy table; a proxy's refusal of its credentials (407) and a server
            that chose no subprotocol of ours are fatal.
    """
    if deadline is None:
        deadline = asyncio.get_running_loop().time() + connect_timeout
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
                heartbeat=heartbeat,
                max_msg_size=max_message_size,
                decode_text=False,
                autoping=autoping,
                compress=15 if compression else 0,
                protocols=tuple(subprotocols),
                **via,
            )
    except Exception as exc:
        raise failure(exc, url, proxy, connect_timeout) from None
    chosen = _response_header(ws, "Sec-WebSocket-Protocol")
    if chosen is None and ws.protocol is not None:
        chosen = ws.protocol  # aiohttp's view, when the private header is out of reach
    refused = subprotocol_refused(chosen, subprotocols)
    if refused is not None:
        # Failed (RFC 6455: 1002); a server that does not answer the close is not waited for.
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            async with asyncio.timeout(_REFUSAL_CLOSE_WAIT):
                await ws.close(code=1002)
        raise refused
    return AiohttpTransport(ws, _response_header(ws, AUTH_HEADER), chosen)
