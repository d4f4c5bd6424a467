"""The write side of one server connection: frames in order, and the close.

Replies, chunks and errors are written by several tasks of a connection at once;
:class:`Wire` writes them one at a time (a lock), so no frame cuts into another,
and drops them quietly once the socket is closed or lost.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSMsgType, web

from .. import codec
from ..framing import FrameGuard
from ..messages import ErrorMessage, ErrorPayload

__all__ = ["INTERNAL", "Wire", "error_frame"]

logger = logging.getLogger("nexus_reactive.server")

#: The text of an ``internal`` error: a bug or an engine failure, never its details.
INTERNAL = "the server failed to answer; try again later"


class Wire:
    """Writes one connection's frames, one at a time."""

    __slots__ = ("_lock", "_peer", "_ws", "guard")

    def __init__(self, ws: web.WebSocketResponse, peer: str | None) -> None:
        self._ws = ws
        self._peer = peer
        self._lock = asyncio.Lock()
        #: Signs (or seals) every frame, once the connection agreed on it: under the
        #: lock, so that sequence numbers go out in order.
        self.guard: FrameGuard | None = None

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

    async def close(self, code: int, reason: bytes) -> None:
        """Close the socket with ``code``."""
        # Under the write lock, so the close frame never cuts into another frame.
        async with self._lock:
            await self._ws.close(code=code, message=reason)


def error_frame(message_id: str, code: str, text: str, retry_after: float | None = None) -> bytes:
    """An ``error`` message, encoded."""
    payload = ErrorPayload(code=code, message=text, retry_after=retry_after)
    return codec.encode(ErrorMessage(id=message_id, payload=payload))
