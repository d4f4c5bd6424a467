"""The link's heartbeat: :class:`Heartbeat`, a ping when the server has been quiet, and
the link declared dead when nothing answers it.

aiohttp's own heartbeat does the same, but pays for it on every socket read: a
callback scheduled on the loop and its timer moved (~13,700 instructions per read,
most of a sequential ask's difference to the fastest client). This one pays a flag
per read (:meth:`Heartbeat.touch`, called by the socket's protocol for any data, as
aiohttp's is) and looks at it from one timer, every half ``every``:

- data came since the last look: nothing to do;
- quiet for two looks in a row (``every`` to 1.5x ``every`` without data): a ping;
- still quiet at the next look (half ``every`` later): the link is dead.

So a silent link is noticed within 2x ``every`` of its last data (aiohttp's: 1.5x),
and a link that keeps sending (a large frame on a slow line, too) is never pinged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["Heartbeat"]


class Heartbeat:
    """Ping a quiet link; call ``dead()`` when it stays quiet after a ping.

    Args:
        every: the heartbeat, in seconds (``heartbeat=``).
        ping: makes the coroutine that sends one ping (its pong is data: ``touch``).
        dead: called once, from the loop, when the link is dead.
    """

    __slots__ = ("_dead", "_every", "_loop", "_ping", "_pinging", "_quiet", "_seen", "_timer")

    def __init__(
        self,
        every: float,
        ping: Callable[[], Coroutine[Any, Any, None]],
        dead: Callable[[], None],
    ) -> None:
        self._every = every
        self._ping = ping
        self._dead = dead
        self._loop = asyncio.get_running_loop()
        self._seen = False
        self._quiet = 0  # looks in a row without data
        self._pinging: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(every / 2, self._look)

    def touch(self) -> None:
        """Data arrived (any of it, a part of a frame too)."""
        self._seen = True

    def _look(self) -> None:
        if self._seen:
            self._seen = False
            self._quiet = 0
        else:
            self._quiet += 1
            if self._quiet >= 3:  # pinged half a heartbeat ago, and nothing since
                self._timer = None
                self.stop()
                self._dead()
                return
            if self._quiet == 2 and self._pinging is None:
                self._pinging = self._loop.create_task(self._send_ping())
        self._timer = self._loop.call_later(self._every / 2, self._look)

    async def _send_ping(self) -> None:
        # A ping that cannot be written (the link is going) is not an error of its own:
        # the receive loop reports why the link ended.
        with contextlib.suppress(Exception):
            await self._ping()
        self._pinging = None

    def stop(self) -> None:
        """No more looks or pings (the link ended or is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pinging is not None:
            self._pinging.cancel()
            self._pinging = None
