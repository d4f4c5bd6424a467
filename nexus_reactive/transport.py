"""The transport seam: what the connection needs from a socket.

:class:`Transport` is one open connection; a :data:`TransportFactory` opens one.
The real transport is :class:`~nexus_reactive.aiohttp_transport.AiohttpTransport`
(in :mod:`nexus_reactive.aiohttp_transport`, imported on the first connection, so
that ``import nexus_reactive`` does not load aiohttp); a test may pass a scripted or
fault-injecting one through ``WebSocketService(transport_factory=...)``.

The aiohttp names (``AiohttpTransport``, ``open_session``, ``open_transport``,
``private_seams``) are still importable from here; they load aiohttp when first used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .errors import NexusConnectionError, ProtocolError

if TYPE_CHECKING:
    from .aiohttp_transport import AiohttpTransport, open_session, open_transport, private_seams

__all__ = [
    "AiohttpTransport",
    "Transport",
    "TransportFactory",
    "open_session",
    "open_transport",
    "private_seams",
]

_LAZY = frozenset({"AiohttpTransport", "open_session", "open_transport", "private_seams"})


class Transport(Protocol):
    """One open connection, as the client uses it: the seam between the connection's
    life (:mod:`nexus_reactive.connection`) and the socket.

    :class:`AiohttpTransport` is the real one; a test may pass a scripted or
    fault-injecting one through ``WebSocketService(transport_factory=...)``.
    """

    #: The upgrade response's ``x-nexus-auth`` header, if the server sent one.
    auth: str | None
    # Optional: ``subprotocol`` (str | None), the subprotocol the server chose; read with
    # getattr, so a test's transport without it counts as "none offered".
    # Optional: ``pump_batches(on_frames, on_invalid, on_first=None)``, :meth:`pump` that
    # hands over the frames of one socket read in a list (``on_frames(list[bytes])``);
    # the receive side then does per batch what it would do per frame. Without it,
    # frames go one by one through :meth:`pump`.
    # Optional: ``handed`` (int), the frames handed to the socket so far, read with
    # getattr: a send cancelled after it handed its frame over (while waiting to drain)
    # then counts as written. Without it, a cancelled send's frame goes back to the
    # outbox (an abandoned ask's is dropped there; a pending one may go twice).
    # Optional: ``write_now(frames) -> bool``, :meth:`send_batch` without waiting: it
    # writes the frames at once if that needs no flow control, else writes nothing and
    # returns ``False``. With it, a long run of asks made together is written from the
    # task that made them, and the server starts on them while the rest are made.

    async def send(self, frame: bytes) -> None:
        """Write one text frame."""

    async def send_batch(self, frames: list[bytes]) -> None:
        """Write several text frames, in order."""

    async def pump(
        self,
        on_frame: Callable[[bytes], NexusConnectionError | None],
        on_invalid: Callable[[ProtocolError], None],
        on_first: Callable[[bytes], NexusConnectionError | None] | None = None,
    ) -> NexusConnectionError:
        """Receive until the connection ends (or a handler returns an error); say why."""
        ...

    async def receive_frame(self) -> bytes:
        """Receive one text frame (handshakes); raise NexusConnectionError if it ends."""
        ...

    async def close(self, code: int = 1000) -> None:
        """Close (idempotent); never raises."""


#: Opens a transport: ``(url, headers, deadline)`` -> an open :class:`Transport`,
#: or raises :class:`NexusConnectionError`. ``deadline`` is in the loop's time.
TransportFactory = Callable[[str, Mapping[str, str], float], Awaitable[Transport]]


def __getattr__(name: str) -> Any:
    # The aiohttp implementation, loaded on first use (PEP 562).
    if name in _LAZY:
        from . import aiohttp_transport

        return getattr(aiohttp_transport, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
