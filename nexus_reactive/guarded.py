"""The client's signed (or sealed) connection: a :class:`~.transport.Transport` that
wraps every frame it sends and checks every frame it receives, with the connection's
:class:`~.framing.FrameGuard`.

The connection swaps it in once the handshake agreed on signed frames
(:mod:`.handshake`); the writer, the receive loop and the codec see plain messages.
A frame that fails its checks ends the connection with close code 4409; the asks in
flight go again on the next connection, as after any lost connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from .errors import NexusConnectionError, ProtocolError
from .framing import CLOSE_BAD_FRAME, FrameGuard, FrameRefused
from .transport import Transport

__all__ = ["GuardedTransport", "refused_error"]

log = logging.getLogger("nexus_reactive.service")

OnFrame = Callable[[bytes], NexusConnectionError | None]


def refused_error(exc: FrameRefused) -> NexusConnectionError:
    """The client's error for a server frame it refused: retried with backoff."""
    return NexusConnectionError(
        f"refused a frame from the server ({exc.kind}): {exc.reason}. Closed the "
        f"connection ({CLOSE_BAD_FRAME}); the asks in flight go again on the next one",
        close_code=CLOSE_BAD_FRAME,
    )


class GuardedTransport:
    """``inner`` with every frame signed (or sealed) out and checked in."""

    __slots__ = ("_guard", "_inner", "_lock", "_refused", "auth", "subprotocol")

    def __init__(self, inner: Transport, guard: FrameGuard) -> None:
        self._inner = inner
        self._guard = guard
        # Sequence numbers are taken in the order frames reach the socket.
        self._lock = asyncio.Lock()
        self._refused = False
        self.auth = inner.auth
        self.subprotocol: str | None = getattr(inner, "subprotocol", None)

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._inner.send(self._guard.wrap(frame))

    async def send_batch(self, frames: list[bytes]) -> None:
        wrap = self._guard.wrap
        async with self._lock:
            await self._inner.send_batch([wrap(frame) for frame in frames])

    async def pump(
        self,
        on_frame: OnFrame,
        on_invalid: Callable[[ProtocolError], None],
        on_first: OnFrame | None = None,
    ) -> NexusConnectionError:
        first = None if on_first is None else self._checked(on_first)
        return await self._inner.pump(self._checked(on_frame), on_invalid, first)

    def _checked(self, handler: OnFrame) -> OnFrame:
        unwrap = self._guard.unwrap

        def checked(frame: bytes) -> NexusConnectionError | None:
            try:
                message = unwrap(frame)
            except FrameRefused as exc:
                return self._refuse(exc)
            return handler(message)

        return checked

    def _refuse(self, exc: FrameRefused) -> NexusConnectionError:
        self._refused = True
        log.warning("refused a frame from the server (%s): %s", exc.kind, exc.reason)
        return refused_error(exc)

    async def receive_frame(self) -> bytes:
        frame = await self._inner.receive_frame()
        try:
            return self._guard.unwrap(frame)
        except FrameRefused as exc:
            raise self._refuse(exc) from None

    async def close(self, code: int = 1000) -> None:
        await self._inner.close(CLOSE_BAD_FRAME if self._refused else code)
