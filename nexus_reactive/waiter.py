"""What the core holds for each ask: :class:`Waiter` (split out of :mod:`nexus_reactive.asks`,
which follows the asks through it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .messages import AskResponse

__all__ = ["Waiter"]


class Waiter:
    """What the core holds for an ask: its future (if awaited), its deadline (a
    bucket, or ``due`` in the table's order), and who wants its streamed pieces. With
    metrics on, also when it was made (``started``) and, with telemetry, its span: set
    only then."""

    __slots__ = ("due", "future", "limit", "on_piece", "slot", "span", "started")

    def __init__(
        self,
        future: asyncio.Future[AskResponse] | None,
        on_piece: Callable[[str], None] | None = None,
    ) -> None:
        self.future = future
        self.on_piece = on_piece
        self.slot: int | None = None  # its bucket in the tracker's Deadlines
        #: Its deadline (loop time) when the table's order times it (the default
        #: ``request_timeout``, see AskClock), else 0.
        self.due = 0.0
        self.limit = 0.0
        # Not set here (nothing to pay with metrics off): the meter sets them.
        self.started: float
        self.span: Any
