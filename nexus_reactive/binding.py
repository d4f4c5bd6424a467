"""The event loop a service is bound to, and the thread checks made against it.

:class:`LoopBinding` is a base of :class:`~nexus_reactive.WebSocketService` (through
:class:`~nexus_reactive.views.ServiceViews`): the service is bound to the loop it
first runs on, and each command checks that it is called on that loop's thread.
Binding tells the parts that wait for a loop: the journal's held failures, and the
asks queued before with a deadline (it is timed from then on).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from .errors import UsageError
from .guards import check_loop_thread

if TYPE_CHECKING:
    from .asks import AskTracker
    from .recorder import Recorder

__all__ = ["LoopBinding"]

_running_loop = asyncio.events._get_running_loop
_get_ident = threading.get_ident


class LoopBinding:
    """The service's loop (``None`` until its first use on one) and its checks."""

    # Set by WebSocketService.__init__.
    _loop: asyncio.AbstractEventLoop | None
    # Whether _loop is one of asyncio's own, which says which thread runs it.
    _loop_says_thread: bool
    _recorder: Recorder
    _asks: AskTracker

    def _check_thread(self, name: str) -> None:
        if self._loop_says_thread and self._loop._thread_id == _get_ident():  # type: ignore[union-attr]
            return  # on the loop's own thread (see _ask_frame): nothing to check
        if _running_loop() is not self._loop:
            check_loop_thread(self._loop, name)

    def _bind(self, name: str = "subscribe") -> asyncio.AbstractEventLoop:
        """The running loop, which the service is bound to from its first use."""
        loop = _running_loop()
        if loop is None:
            raise UsageError(f"{name}() needs a running asyncio event loop; call it from one")
        if self._loop is None:
            self._adopt(loop)
        elif self._loop is not loop:
            raise UsageError("a WebSocketService is bound to the event loop it first ran on")
        return loop

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._loop_says_thread = isinstance(loop, asyncio.BaseEventLoop)
        self._recorder.bind(loop)  # journal failures held until now go there
        self._asks.bind(loop)  # asks queued without a loop: their deadlines run on it
