"""The write side of one server connection: frames in order, and the close.

Replies, chunks and errors are written by several tasks of a connection at once;
:class:`Wire` writes them one at a time (a lock), so no frame cuts into another,
and drops them quietly once the socket is closed or lost.

Every close this server starts goes through :meth:`Wire.close`, which remembers the
code sent (:attr:`Wire.sent_close`): the socket's own ``close_code`` is, after a
close we started, the code the client answered with (aiohttp's client echoes 1000),
so it cannot say what the server sent.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WebSocketError, WSMsgType, web

from .. import codec
from ..framing import FrameGuard
from ..messages import ErrorMessage, ErrorPayload

__all__ = ["INTERNAL", "Wire", "error_frame"]

logger = logging.getLogger("nexus_reactive.server")

#: The text of an ``internal`` error: a bug or an engine failure, never its details.
INTERNAL = "the server failed to answer; try again later"


class Wire:
    """Writes one connection's frames, one at a time."""

    __slots__ = ("_lock", "_peer", "_ws", "guard", "sent_close")

    def __init__(self, ws: web.WebSocketResponse, peer: str | None) -> None:
        self._ws = ws
        self._peer = peer
        self._lock = asyncio.Lock()
        #: Signs (or seals) every frame, once the connection agreed on it: under the
        #: lock, so that sequence numbers go out in order.
        self.guard: FrameGuard | None = None
        #: The close code this server sent, if it closed the connection first.
        self.sent_close: int | None = None

    async def send(self, frame: bytes) -> None:
        """Write ``frame``; nothing if the socket is closed, or lost meanwhile."""
        if self._ws.closed:
            return
        async with self._lock:
            if self._ws.closed:  # closed while this frame waited for the lock
                return
            if self.guard is not None:
                frame = self.guard.wrap(frame)
            try:
                await self._ws.send_frame(frame, WSMsgType.TEXT)
            except ConnectionError:
                # The peer went away mid-write; the receive loop will see the close.
                logger.debug("dropped a reply to %s: connection lost", self._peer)

    async def send_error(
        self, message_id: str, code: str, text: str, retry_after: float | None = None
    ) -> None:
        """Write an ``error`` message."""
        await self.send(error_frame(message_id, code, text, retry_after))

    async def close(self, code: int, reason: bytes, *, after_writes: bool = True) -> None:
        """Close the socket with ``code`` (nothing if it is closed already).

        Args:
            code: the close code to send; kept in :attr:`sent_close`.
            reason: the close frame's reason.
            after_writes: wait for the frame being written, so that the close frame
                never cuts into it; ``False`` (a shutdown) closes at once, whatever a
                slow client leaves unwritten.
        """
        if not after_writes:
            await self._close(code, reason)
            return
        async with self._lock:
            await self._close(code, reason)

    def closed_by_aiohttp(self, error: object) -> None:
        """Note the code aiohttp closed with for ``error`` (a ``WebSocketError`` from the
        receive: 1009 for a frame over the size limit, 1002, 1007...); nothing for
        another error (a lost connection, a missed heartbeat: no close frame)."""
        if isinstance(error, WebSocketError) and self.sent_close is None:
            self.sent_close = error.code

    async def _close(self, code: int, reason: bytes) -> None:
        if self._ws.closed:  # the client's close came first: not ours to report
            return
        # Noted before the close is awaited: the receive loop may end meanwhile.
        self.sent_close = code
        await self._ws.close(code=code, message=reason)


def error_frame(message_id: str, code: str, text: str, retry_after: float | None = None) -> bytes:
    """An ``error`` message, encoded."""
    payload = ErrorPayload(code=code, message=text, retry_after=retry_after)
    return codec.encode(ErrorMessage(id=message_id, payload=payload))
