"""``use_websocket``: the React hook's mirror, a store of state and messages.

The seed's hook returns ``{state, messages, sendMessage, clearMessages}``; here
``use_websocket(...)`` returns a :class:`WebSocketStore` with the same four
members, where ``state`` and ``messages`` are observables that always hold a
current value (``.value``) and replay it to each new subscriber.

History is bounded and cheap: appending is O(1), whatever its length, and each
emission is an immutable :class:`History` view that shares storage with the
store instead of copying the list. Under a flood, ``messages`` emits at most
once per event-loop tick with everything that arrived in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Generic, Self, TypeVar, overload

from reactivex import abc

from .config import WebSocketConfig
from .core import ConnectionState
from .errors import NexusError, UsageError
from .messages import AuthOkMessage, ChallengeMessage, Message, new_id
from .service import WebSocketService
from .streams import DerivedStream, ScheduledView, ValueStream

__all__ = ["History", "WebSocketStore", "use_websocket"]

log = logging.getLogger("nexus_reactive.store")

T = TypeVar("T")

# Handshake frames are the connection's business, not the conversation's.
_NOT_HISTORY = (ChallengeMessage, AuthOkMessage)


class History(Sequence[T], Generic[T]):
    """An immutable view of messages in arrival order.

    It shares the store's storage: the store only ever appends to it, so the slice
    this view covers never changes. Creating one is O(1).
    """

    __slots__ = ("_items", "_start", "_stop")

    def __init__(self, items: list[T], start: int = 0, stop: int | None = None) -> None:
        self._items = items
        self._start = start
        self._stop = len(items) if stop is None else stop

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return self._items[self._start : self._stop][index]
        n = self._stop - self._start
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("history index out of range")
        return self._items[self._start + index]

    def __iter__(self) -> Iterator[T]:
        items = self._items
        for i in range(self._start, self._stop):
            yield items[i]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({len(self)} messages)"

    def _repr_html_(self) -> str:
        from .display import history_html

        return history_html(self)  # type: ignore[arg-type]


class WebSocketStore:
    """What :func:`use_websocket` returns: state, messages and two commands.

    Unpacks like the hook's return value::

        state, messages, send_message, clear_messages = store
    """

    def __init__(
        self,
        config: WebSocketConfig,
        loop: asyncio.AbstractEventLoop,
        scheduler: abc.SchedulerBase | None = None,
    ) -> None:
        self._config = config
        self._loop = loop
        self._thread = threading.get_ident()
        self._scheduler = scheduler
        self.service = WebSocketService(config)
        self._buffer: list[Message] = []
        self._start = 0
        self._flush_scheduled = False
        self._messages: DerivedStream[History[Message]] = DerivedStream(self._snapshot, "messages")
        self._state_view: ValueStream[ConnectionState] = self.service.state
        self._messages_view: ValueStream[History[Message]] = self._messages
        if scheduler is not None:
            self._state_view = ScheduledView(self.service.state, scheduler)
            self._messages_view = ScheduledView(self._messages, scheduler)
        self._closed = False
        self._unsubscribe = self.service.messages.subscribe(self._on_message)
        self._connecting: asyncio.Task[None] | None = loop.create_task(
            self._connect(), name="nexus-reactive-store-connect"
        )

    def __repr__(self) -> str:
        return (
            f"<WebSocketStore {self._config.url} {self.service.state.value} "
            f"{len(self._snapshot())} messages>"
        )

    # -- the hook's four members -----------------------------------------------------

    @property
    def state(self) -> ValueStream[ConnectionState]:
        """The connection state; ``state.value`` is the current one.

        Emissions arrive on the store's scheduler if one was given, else on the
        event loop's thread.
        """
        return self._state_view

    @property
    def messages(self) -> ValueStream[History[Message]]:
        """Received messages in arrival order; ``messages.value`` is current."""
        return self._messages_view

    @property
    def scheduler(self) -> abc.SchedulerBase | None:
        """The scheduler every emission is delivered on, if one was given."""
        return self._scheduler

    def send_message(self, query: str, team_id: str | None = None) -> str:
        """Ask ``query``; the answer arrives in :attr:`messages`. Any thread may call it.

        Returns:
            The ask's id, which its ``response`` carries.

        Raises:
            OutboxFull: too many messages wait for a connection; nothing was queued.
                (Called from another thread, the error goes to ``service.errors``.)
        """
        if self._on_loop_thread():
            return self.service.send_query(query, team_id)
        ask_id = new_id()
        self._loop.call_soon_threadsafe(self._send_from_thread, query, team_id, ask_id)
        return ask_id

    def clear_messages(self) -> None:
        """Empty the history; views taken before keep their contents. Any thread."""
        if not self._on_loop_thread():
            self._loop.call_soon_threadsafe(self.clear_messages)
            return
        self._buffer = []
        self._start = 0
        self._messages._emit(self._snapshot())

    def __iter__(self) -> Iterator[Any]:
        yield self.state
        yield self.messages
        yield self.send_message
        yield self.clear_messages

    # -- cleanup ("unmount") -------------------------------------------------------

    async def close(self) -> None:
        """Stop connecting, close the connection, and complete the streams.

        It may be awaited from any thread or event loop: the work runs on the
        store's own loop.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not self._loop:
            future = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
            await asyncio.wrap_future(future)
            return
        await self._close()

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._unsubscribe.dispose()
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connecting
        await self.service.close()
        self._messages._complete()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- notebooks ---------------------------------------------------------------

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        from .display import store_html

        return store_html(self.service.state.value, self._snapshot(), self._config.url)

    def display(self) -> Any:
        """Show a live view in a notebook that updates in place as state and
        messages change. Returns the IPython display handle."""
        from .display import live_view

        return live_view(self)

    # -- internals ---------------------------------------------------------------

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread

    def _send_from_thread(self, query: str, team_id: str | None, ask_id: str) -> None:
        try:
            self.service.send_query(query, team_id, message_id=ask_id)
        except NexusError as exc:
            log.warning("send_message from another thread failed: %s", exc)
            self.service._report(exc)

    async def _connect(self) -> None:
        try:
            await self.service.connect()
        except NexusError as exc:
            # Already visible to the application: state.value.error and errors.
            log.info("the store could not connect: %s", exc)

    def _on_message(self, message: Message) -> None:
        if isinstance(message, _NOT_HISTORY):
            return
        buffer = self._buffer
        buffer.append(message)
        limit = self._config.max_messages
        if len(buffer) - self._start > limit:
            self._start += 1
            # Compact once half the buffer is dead: amortised O(1) per message, and
            # views taken before keep the old list.
            if self._start >= limit:
                self._buffer = buffer[self._start :]
                self._start = 0
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._closed:
            self._messages._emit(self._snapshot())

    def _snapshot(self) -> History[Message]:
        return History(self._buffer, self._start, len(self._buffer))


@overload
def use_websocket(
    config: WebSocketConfig, /, *, scheduler: abc.SchedulerBase | None = None
) -> WebSocketStore: ...
@overload
def use_websocket(
    config: None = None, /, *, scheduler: abc.SchedulerBase | None = None, **options: Any
) -> WebSocketStore: ...
def use_websocket(
    config: WebSocketConfig | None = None,
    /,
    *,
    scheduler: abc.SchedulerBase | None = None,
    **options: Any,
) -> WebSocketStore:
    """Create a store and start connecting at once, like the seed's ``useWebSocket``.

    Call it from a coroutine (the store runs on the running event loop)::

        async with use_websocket(url="ws://localhost:8000") as store:
            state, messages, send_message, clear_messages = store

    Args:
        config: a :class:`WebSocketConfig`; or give its fields as keywords
            (``url=..., api_key=..., max_messages=...``), optionally overriding
            those of ``config``.
        scheduler: deliver every emission of ``state`` and ``messages`` on this
            reactivex scheduler (e.g. ``TkinterScheduler``, ``QtScheduler``).

    Raises:
        UsageError: there is no running event loop.
        ConfigError: an option is invalid or unknown.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise UsageError(
            "use_websocket() needs a running asyncio event loop. From a script, call it "
            "inside a coroutine: `async def main(): async with use_websocket(...) as "
            "store: ...` then `asyncio.run(main())`; or use use_websocket_sync(...), which "
            "runs its own loop in a background thread (Tk/Qt apps, plain REPLs)."
        ) from None
    resolved = WebSocketConfig.from_options(config, **options) if options else config
    if resolved is None:
        resolved = WebSocketConfig()
    return WebSocketStore(resolved, loop, scheduler)
