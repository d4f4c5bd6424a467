"""What the core holds for each ask: :class:`Waiter` (split out of :mod:`nexus_reactive.asks`,
which follows the asks through it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import msgspec

from .messages import AskResponse

__all__ = ["Waiter"]


class Waiter(msgspec.Struct):
    """What the core holds for an ask: its future (if awaited), its deadline (a
    bucket, or ``due`` in the table's order), and who wants its streamed pieces. With
    metrics on, also when it was made (``started``) and, with telemetry, its span.

    A msgspec ``Struct``, for its constructor in C: one is made per ask, and a class
    with ``__slots__`` and a Python ``__init__`` cost ~500 instructions more.
    """

    future: asyncio.Future[AskResponse] | None
    on_piece: Callable[[str], None] | None = None
    #: Its bucket in the tracker's Deadlines, if one times it.
    slot: int | None = None
    #: Its deadline (loop time) when the table's order times it (the default
    #: ``request_timeout``, see AskClock), else 0.
    due: float = 0.0
    limit: float = 0.0
    #: Set by the meter (metrics on) and by telemetry.
    started: float = 0.0
    span: Any = None
