"""A synchronous, thread-backed client: for scripts, Tk/Qt apps and plain REPLs
that run no asyncio loop (and for notebooks that prefer not to share theirs).

``use_websocket_sync(...)`` starts a private event loop in a daemon thread, builds a
:class:`~nexus_reactive.WebSocketStore` on it, and returns a facade whose methods
are plain blocking calls, safe from any thread. ``close()`` closes the store, stops
the loop and joins the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, Self, TypeVar

from reactivex import abc

from .config import WebSocketConfig
from .core import ConnectionState
from .errors import ConfigError, UsageError
from .messages import AskResponse
from .service import WebSocketService
from .store import History, HistoryItem, WebSocketStore, use_websocket
from .streams import ValueStream

__all__ = ["SyncWebSocketStore", "use_websocket_sync"]

T = TypeVar("T")


class SyncWebSocketStore:
    """The store, driven from a background event loop; every method blocks.

    ``state`` and ``messages`` emit on the background loop's thread, or on the
    ``scheduler`` given to :func:`use_websocket_sync` (use a UI toolkit's scheduler
    to receive them on the UI thread).
    """

    def __init__(
        self,
        config: WebSocketConfig,
        scheduler: abc.SchedulerBase | None = None,
        **store_options: Any,
    ) -> None:
        if store_options.get("share"):
            raise ConfigError(
                "use_websocket_sync(share=True) cannot share a connection: each sync store "
                "runs its own event loop, and a connection belongs to one loop. Share "
                "within one loop with use_websocket(share=True), or keep one sync store "
                "and scope asks with team_id"
            )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="nexus-reactive-loop", daemon=True)
        self._thread.start()
        self._closed = False

        async def create() -> WebSocketStore:
            return use_websocket(config, scheduler=scheduler, **store_options)

        try:
            self._store = self._call(create())
        except BaseException:
            self._stop_loop()
            raise

    def __repr__(self) -> str:
        return f"<SyncWebSocketStore {self._store!r}>"

    def _repr_html_(self) -> str:
        return self._store._repr_html_()

    # -- the hook's four members -----------------------------------------------------

    @property
    def state(self) -> ValueStream[ConnectionState]:
        return self._store.state

    @property
    def messages(self) -> ValueStream[History[HistoryItem]]:
        return self._store.messages

    def send_message(self, query: str, team_id: str | None = None) -> str:
        """Ask ``query``; the answer arrives in :attr:`messages`. Returns its id."""
        self._check_open()
        return self._store.send_message(query, team_id)

    def clear_messages(self) -> None:
        self._check_open()
        self._store.clear_messages()

    def reconnect(self) -> None:
        """Connect again now, with a fresh retry budget; returns at once (see
        :meth:`WebSocketService.reconnect`). :meth:`wait_connected` waits for it."""
        self._check_open()
        self._store.reconnect()

    def __iter__(self) -> Iterator[Any]:
        yield self.state
        yield self.messages
        yield self.send_message
        yield self.clear_messages

    # -- blocking conveniences -----------------------------------------------------

    @property
    def service(self) -> WebSocketService:
        """The underlying service (its coroutines run on the background loop)."""
        return self._store.service

    def wait_connected(self, timeout: float | None = 30.0) -> ConnectionState:
        """Block until connected.

        Raises:
            NexusConnectionError: the service gave up (fatal error, attempts exhausted).
            TimeoutError: not connected within ``timeout``.
        """
        self._check_open()
        self._call(self._store.service.connect(), timeout)
        return self._store.state.value

    def ask(
        self, query: str, team_id: str | None = None, timeout: float | None = None
    ) -> AskResponse:
        """Ask and block until exactly this answer arrives (see ``WebSocketService.ask``)."""
        self._check_open()
        return self._call(self._store.service.ask(query, team_id, timeout))

    # -- cleanup ---------------------------------------------------------------

    def close(self) -> None:
        """Close the store, stop the background loop and join its thread. Idempotent.

        On the loop's own thread (a subscriber without a scheduler) it cannot wait for
        itself: it returns at once, and the store closes, then the loop stops, once the
        subscriber has returned. A ``close()`` on another thread then waits for that.
        """
        if threading.current_thread() is self._thread:
            if not self._closed:
                self._closed = True
                self._loop.create_task(self._close_on_loop(), name="nexus-reactive-sync-close")
            return
        if self._closed:
            self._thread.join()  # (a close begun on the loop's thread: until it ended)
            return
        self._closed = True
        try:
            self._call(self._store.close())
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise UsageError(
                "a blocking SyncWebSocketStore method was called on its own loop's thread "
                "(from a subscriber?); that would deadlock. Use send_message() there."
            )
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"no result within {timeout}s") from None

    def _check_open(self) -> None:
        if self._closed:
            raise UsageError("this SyncWebSocketStore is closed; create a new one")

    def _run(self) -> None:
        # The loop starts, stops and is cleaned up on its own thread, so close() works
        # from anywhere, including a thread that runs an event loop of its own.
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _close_on_loop(self) -> None:
        try:
            await self._store.close()
        finally:
            self._loop.stop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def use_websocket_sync(
    config: WebSocketConfig | None = None,
    /,
    *,
    scheduler: abc.SchedulerBase | None = None,
    team_id: str | None = None,
    share: bool = False,
    max_messages: int | None = None,
    batch_interval: float | None = None,
    **options: Any,
) -> SyncWebSocketStore:
    """Like :func:`use_websocket`, for code without an asyncio loop.

    Example::

        with use_websocket_sync(url="ws://localhost:8000") as store:
            store.wait_connected()
            print(store.ask("What is Nexus?").answer)

    Args:
        config: a :class:`WebSocketConfig`, or its fields as keywords.
        scheduler: deliver ``state`` and ``messages`` emissions on this scheduler.
        team_id: the store's team scope, as for :func:`use_websocket`.
        share: must stay ``False`` (the default): each sync store runs its own event
            loop and so its own connection; ``share=True`` raises ``ConfigError``. To
            share one connection, use :func:`use_websocket` with ``share=True`` on one
            loop.
        max_messages: how many received messages the history keeps (1,000).
        batch_interval: ``messages`` emits at most once per this many seconds.

    Raises:
        ConfigError: an option is invalid or unknown, or ``share=True``.
    """
    resolved = WebSocketConfig.from_options(config, **options) if options else config
    return SyncWebSocketStore(
        resolved or WebSocketConfig(),
        scheduler,
        team_id=team_id,
        share=share,
        max_messages=max_messages,
        batch_interval=batch_interval,
    )
