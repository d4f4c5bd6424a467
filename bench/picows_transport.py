"""A prototype :class:`~nexus_reactive.transport.Transport` on picows, for the bench only.

Issue 14 asks whether a second transport on picows (the fastest asyncio WebSocket
client) is worth shipping: only if it lifts the service path by at least 20% over
the aiohttp transport, in the same run, and passes the fault and hostile suites
unchanged. This is just enough of one to measure that through the public seam,
``WebSocketService(config, transport_factory=picows_factory(config))``:

- connect with the service's headers, a deadline, ``x-nexus-auth`` read from the
  upgrade response, and HTTP refusals mapped with the library's own policy table;
- frames out with ``WSTransport.send`` (a batch is one frame after another);
- frames in: picows calls :meth:`_Listener.on_ws_frame` from ``data_received``, and
  the listener hands each text frame's bytes straight to the service's ``on_frame``
  (no per-frame await, no queue while the receive loop runs);
- the end of a connection mapped to the library's close errors.

Not done (what shipping it would need): flow control on send (pause_writing),
fragmented messages, redirect refusal, TLS options, proxy settings, the whole
fault and hostile suites. See README's Performance section for the decision.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import picows
from picows import WSCloseCode, WSMsgType

from nexus_reactive import WebSocketConfig
from nexus_reactive.core.opening import AUTH_HEADER
from nexus_reactive.core.policy import close_error, close_retry_after, http_error
from nexus_reactive.errors import NexusConnectionError, ProtocolError
from nexus_reactive.transport import Transport, TransportFactory

__all__ = ["PicowsTransport", "picows_factory"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CLOSE = WSMsgType.CLOSE

OnFrame = Callable[[bytes], NexusConnectionError | None]


class _Listener(picows.WSListener):
    """Receives frames; before the receive loop runs they queue (handshakes)."""

    def __init__(self) -> None:
        super().__init__()
        self.transport: picows.WSTransport | None = None
        self.on_text: OnFrame | None = None
        self.on_frame: OnFrame | None = None
        self.on_invalid: Callable[[ProtocolError], None] | None = None
        self.queued: deque[bytes] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.ended: asyncio.Future[NexusConnectionError] = (
            asyncio.get_running_loop().create_future()
        )
        self.close_code: int | None = None
        self.close_reason = ""

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        kind = frame.msg_type
        if kind is _TEXT:
            data = frame.get_payload_as_bytes()
            on_text = self.on_text
            if on_text is None:
                self.queued.append(data)
                self._wake()
                return
            stop = on_text(data)
            self.on_text = self.on_frame
            if stop is not None:
                self._end(stop)
                transport.disconnect()
        elif kind is _CLOSE:
            code = frame.get_close_code()
            self.close_code = code.value if isinstance(code, WSCloseCode) else int(code)
            self.close_reason = frame.get_close_reason() or ""
            transport.send_close(code)
            transport.disconnect()
        elif kind is _BINARY and self.on_invalid is not None:
            self.on_invalid(
                ProtocolError(
                    "received a binary frame; the protocol uses text frames only",
                    frame.get_payload_as_bytes()[:64],
                )
            )

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        code = self.close_code
        if code is not None:
            reason = self.close_reason
            error = close_error(code, reason, retry_after=close_retry_after(reason))
        else:
            error = NexusConnectionError("connection lost", close_code=None)
        self._end(error)

    def _end(self, error: NexusConnectionError) -> None:
        if not self.ended.done():
            self.ended.set_result(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class PicowsTransport:
    """One open WebSocket connection, over picows."""

    def __init__(self, transport: picows.WSTransport, listener: _Listener) -> None:
        self._ws = transport
        self._listener = listener
        headers = transport.response.headers
        value = headers.get(AUTH_HEADER) if headers is not None else None
        self.auth: str | None = value if isinstance(value, str) else None

    async def send(self, frame: bytes) -> None:
        self._ws.send(_TEXT, frame)

    async def send_batch(self, frames: list[bytes]) -> None:
        send = self._ws.send
        for frame in frames:
            send(_TEXT, frame)

    async def pump(
        self,
        on_frame: OnFrame,
        on_invalid: Callable[[ProtocolError], None],
        on_first: OnFrame | None = None,
    ) -> NexusConnectionError:
        listener = self._listener
        on_text = on_frame if on_first is None else on_first
        # Frames that arrived before the loop (with the handshake's) go first, in order.
        while listener.queued:
            stop = on_text(listener.queued.popleft())
            on_text = on_frame
            if stop is not None:
                self._ws.disconnect()
                return stop
        if listener.ended.done():
            return listener.ended.result()
        listener.on_frame, listener.on_invalid, listener.on_text = on_frame, on_invalid, on_text
        try:
            return await asyncio.shield(listener.ended)
        finally:
            listener.on_text = listener.on_frame = None

    async def receive_frame(self) -> bytes:
        listener = self._listener
        while not listener.queued:
            if listener.ended.done():
                raise listener.ended.result()
            listener.waiter = asyncio.get_running_loop().create_future()
            try:
                await listener.waiter
            finally:
                listener.waiter = None
        return listener.queued.popleft()

    async def close(self, code: int = 1000) -> None:
        ws = self._ws
        try:
            if not ws.is_close_frame_sent:
                ws.send_close(WSCloseCode(code))
            ws.disconnect()
            await asyncio.wait_for(ws.wait_disconnected(), 1.0)
        except (OSError, ValueError, TimeoutError, picows.WSError):
            pass


def picows_factory(config: WebSocketConfig) -> TransportFactory:
    """A transport factory for ``WebSocketService(config, transport_factory=...)``."""
    heartbeat = config.heartbeat

    async def dial(url: str, headers: Mapping[str, str], deadline: float) -> Transport:
        loop = asyncio.get_running_loop()
        options: dict[str, Any] = {
            "extra_headers": dict(headers),
            "max_frame_size": config.max_message_size,
            "max_redirects": 0,
            "websocket_handshake_timeout": max(deadline - loop.time(), 0.001),
        }
        if heartbeat is not None:
            options.update(
                enable_auto_ping=True,
                auto_ping_idle_timeout=heartbeat,
                auto_ping_reply_timeout=heartbeat,
            )
        try:
            async with asyncio.timeout_at(deadline):
                transport, listener = await picows.ws_connect(_Listener, url, **options)
        except picows.WSHandshakeError as exc:
            response = getattr(exc, "response", None)
            status = getattr(response, "status", None)
            if status is not None:
                raise http_error(int(status), None) from None
            raise NexusConnectionError(f"cannot connect to {url}: {exc}") from None
        except TimeoutError:
            raise NexusConnectionError("no connection within connect_timeout") from None
        except (OSError, picows.WSError) as exc:
            raise NexusConnectionError(f"cannot connect to {url}: {exc}") from None
        assert isinstance(listener, _Listener)
        return PicowsTransport(transport, listener)

    return dial
