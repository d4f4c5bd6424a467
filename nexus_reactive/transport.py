"""The aiohttp WebSocket transport: the only module that touches sockets.

It opens one connection (mapping every aiohttp and OS failure to the library's
own errors, here and nowhere else), writes frames, and runs the tight receive
loop that hands each text frame's bytes to a callback. Frames stay bytes end to
end (``decode_text=False``), so msgspec decodes them without a str copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable, Mapping
from typing import Any, Literal

import aiohttp
from aiohttp import WSMsgType

from .core.policy import close_error, http_error
from .errors import NexusConnectionError, ProtocolError

__all__ = ["Transport", "open_transport"]

log = logging.getLogger("nexus_reactive.transport")

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_ENDED = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})


class _Collector:
    """Stands in for the asyncio transport while aiohttp frames a batch: it keeps
    the bytes, so the batch goes to the socket in one write."""

    __slots__ = ("chunks", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def is_closing(self) -> bool:
        return bool(self.real.is_closing())


class Transport:
    """One open WebSocket connection."""

    __slots__ = ("_batcher", "_ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[Literal[False]]) -> None:
        self._ws = ws
        # Batching reuses aiohttp's own framing and masking (WebSocketWriter's
        # _write_websocket_frame) and writes the frames at once. Those are private
        # names: if this aiohttp lacks them, or compresses, frames go one by one.
        writer = getattr(ws, "_writer", None)
        usable = (
            writer is not None
            and not getattr(writer, "compress", 1)
            and all(
                hasattr(writer, name)
                for name in ("_write_websocket_frame", "transport", "protocol", "_output_size")
            )
        )
        self._batcher: Any = writer if usable else None

    @property
    def closed(self) -> bool:
        return self._ws.closed

    async def send(self, frame: bytes) -> None:
        """Write one text frame (UTF-8 JSON bytes)."""
        await self._ws.send_frame(frame, _TEXT)

    async def send_batch(self, frames: list[bytes]) -> None:
        """Write several text frames, in order, with one write to the socket.

        One ``send()`` system call per frame is most of the cost of sending on
        loopback; frames queued together go together.
        """
        writer = self._batcher
        if writer is None or len(frames) == 1:
            for frame in frames:
                await self._ws.send_frame(frame, _TEXT)
            return
        real = writer.transport
        collector = _Collector(real)
        writer.transport = collector
        try:
            for frame in frames:
                writer._write_websocket_frame(frame, _TEXT, 0)
        finally:
            writer.transport = real
        real.write(b"".join(collector.chunks))
        # Flow control as aiohttp's send_frame does it.
        if writer._output_size > writer._limit:
            writer._output_size = 0
            if writer.protocol._paused:
                await writer.protocol._drain_helper()

    async def pump(
        self,
        on_frame: Callable[[bytes], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
    ) -> NexusConnectionError:
        """Receive until the connection ends; return why it ended.

        Args:
            on_frame: called with each text frame's bytes, in order. Returning an
                error ends the connection with that error.
            on_invalid: called for a frame the protocol does not allow (binary).
        """
        ws = self._ws
        receive = ws.receive
        while True:
            msg = await receive()
            kind = msg.type
            if kind is _TEXT:
                stop = on_frame(msg.data)
                if stop is not None:
                    return stop
            elif kind is _BINARY:
                on_invalid(
                    ProtocolError(
                        "received a binary frame; the protocol uses text frames only",
                        bytes(msg.data[:64]),
                    )
                )
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
            if msg.type in _ENDED:
                raise self._why_ended(msg.type, msg.data, msg.extra)

    def _why_ended(self, kind: WSMsgType, data: object, extra: object) -> NexusConnectionError:
        ws = self._ws
        if kind is WSMsgType.CLOSE and isinstance(data, int):
            reason = extra if isinstance(extra, str) else ""
            return close_error(data, reason, retry_after=_retry_after_in(reason))
        exc = ws.exception()
        code = ws.close_code
        if isinstance(exc, aiohttp.WebSocketError) and exc.code == 1009:
            return close_error(1009, "a received frame exceeded max_message_size")
        if isinstance(exc, asyncio.TimeoutError):
            return NexusConnectionError(
                "the server stopped answering pings (no pong within the heartbeat); "
                "the link is treated as dead",
                close_code=code,
            )
        if exc is not None:
            return NexusConnectionError(f"connection lost: {exc}", close_code=code)
        return close_error(code)

    async def close(self, code: int = 1000) -> None:
        """Close the connection (idempotent); never raises."""
        with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
            await self._ws.close(code=code)


async def open_transport(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str],
    ssl: _ssl.SSLContext | bool = True,
    heartbeat: float | None = None,
    connect_timeout: float = 10.0,
    max_message_size: int = 4 * 1024 * 1024,
) -> Transport:
    """Open a WebSocket to ``url``.

    Raises:
        AuthenticationError: the server refused the credentials (HTTP 401/403).
        NexusConnectionError: any other failure, marked retryable or not per the
            policy table.
    """
    try:
        async with asyncio.timeout(connect_timeout):
            ws = await session.ws_connect(
                url,
                headers=headers,
                ssl=ssl,
                heartbeat=heartbeat,
                max_msg_size=max_message_size,
                decode_text=False,
                autoping=True,
            )
    except aiohttp.WSServerHandshakeError as exc:
        raise http_error(exc.status, _retry_after(exc.headers)) from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise NexusConnectionError(
            f"the server's TLS certificate was rejected ({_cert_reason(exc)}). If the "
            "server uses a private CA, pass ssl=<an ssl.SSLContext that trusts it>; check "
            "that the URL's host name matches the certificate. Not retrying.",
            retryable=False,
        ) from None
    except TimeoutError:
        raise NexusConnectionError(
            f"no connection within connect_timeout ({connect_timeout:g}s)"
        ) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise NexusConnectionError(f"cannot connect to {url}: {_describe(exc)}") from None
    return Transport(ws)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if not headers:
        return None
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    error = exc.certificate_error
    return getattr(error, "verify_message", None) or str(error) or "verification failed"


def _retry_after_in(reason: str) -> float | None:
    """A close reason may carry ``retry_after``: ``"retry_after=2.5"`` or ``"2.5"``."""
    text = reason.strip().removeprefix("retry_after").lstrip(":= ")
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text
