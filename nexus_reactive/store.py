"""``use_websocket``: the React hook's mirror, a store of state and messages.

The TypeScript hook ``useWebSocket`` returns ``{state, messages, sendMessage,
clearMessages}``; here ``use_websocket(...)`` returns a :class:`WebSocketStore`
with the same four members, where ``state`` and ``messages`` are observables that
always hold a current value (``.value``) and replay it to each new subscriber.

History is bounded and cheap: appending is O(1), whatever its length, and each
emission is an immutable :class:`History` view that shares storage with the
store instead of copying the list. Under a flood, ``messages`` emits at most
once per event-loop tick (or per ``batch_interval``) with everything that arrived.

A streamed answer shows as a :class:`PartialResponse` that grows in place and is
replaced by the final response.

Each store has its own connection by default. With ``share=True``, stores for the
same server and settings on one loop share one; each still sees only the answers
to its own asks (and the server's unsolicited messages), never another store's:
each answer is routed by its id to the store that asked (:mod:`nexus_reactive.fanout`).
A store scoped to a ``team_id`` sees only the answers to its own asks too.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Self

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops

from . import pool
from .config import WebSocketConfig
from .core import ConnectionState, Metrics
from .errors import NexusError, UsageError
from .history import History, HistoryItem
from .intake import Intake, history_options
from .messages import ask_request, new_id
from .scheduled import ScheduledView, deliver_on
from .service import WebSocketService
from .store_loop import await_on, check_store_loop, loop_closed
from .streams import Publisher, ValueStream
from .task_stop import stop_tasks

__all__ = ["History", "HistoryItem", "WebSocketStore", "use_websocket"]

log = logging.getLogger("nexus_reactive.store")
_CLOSED = "{}(): this store is closed; create a new one"
_made = threading.Lock()
_running_loop = asyncio.events._get_running_loop


class WebSocketStore:
    """What :func:`use_websocket` returns: state, messages and two commands.

    Unpacks like the hook's return value::

        state, messages, send_message, clear_messages = store

    Args:
        config: the connection's settings.
        loop: the event loop the store runs on.
        scheduler: deliver ``state`` and ``messages`` on this reactivex scheduler.
        team_id: scope the store to a team (see :func:`use_websocket`).
        share: share a connection with other stores (see :func:`use_websocket`).
        max_messages: how many received messages the history keeps (1,000).
        batch_interval: ``messages`` emits at most once per this many seconds;
            ``None`` (the default): at most once per event-loop tick.

    Raises:
        ConfigError: ``max_messages`` or ``batch_interval`` is invalid.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        loop: asyncio.AbstractEventLoop,
        scheduler: abc.SchedulerBase | None = None,
        *,
        team_id: str | None = None,
        share: bool = False,
        max_messages: int | None = None,
        batch_interval: float | None = None,
    ) -> None:
        max_messages, batch_interval = history_options(config, max_messages, batch_interval)
        self._config = config
        self._limit = max_messages
        self._interval = batch_interval
        self._loop = loop
        self._thread = threading.current_thread()
        self._scheduler = scheduler
        self._team_id = team_id
        self._shared = share
        # A scoped store keeps to the answers to its own asks.
        self._scoped = share or team_id is not None
        router = None
        if share:
            self.service, router = pool.acquire(config, loop, history_limit=max_messages)
        else:
            self.service = WebSocketService(config, history_limit=max_messages)
        # The history and the messages stream: the hot path, in intake.py.
        self._intake = Intake(
            loop, max_messages, batch_interval, scoped=self._scoped, router=router
        )
        self._errors: Publisher[NexusError] | None = None  # made when first subscribed
        self._state_view: ValueStream[ConnectionState] = self.service.state
        self._messages_view: ValueStream[History[HistoryItem]] = self._intake.stream
        if scheduler is not None:
            self._state_view = ScheduledView(self.service.state, scheduler, loop)
            self._messages_view = ScheduledView(self._intake.stream, scheduler, loop)
        self._closed = False
        self._metrics_view: ValueStream[Metrics] | None = None
        if not self._scoped:
            # A journal (persist=) restores the history of the previous life.
            self._intake.restore(self.service.restored_history)
        # A direct sink: the intake is the service's own layer above it, on the hot path.
        self._detach = (
            None
            if router is not None
            else self.service.messages.attach(self._intake.sink, batch=self._intake.on_messages)
        )
        # Connect now (a shared service: the pool does, once for all its stores); a lazy
        # one connects when the store's messages are watched, or on an ask.
        self._connecting: asyncio.Task[None] | None = None
        lazy = self.service.demand_from(self._messages_view, loop)
        if not lazy and not share:
            self._connecting = loop.create_task(
                self._connect(), name="nexus-reactive-store-connect"
            )

    def __repr__(self) -> str:
        team = f" team={self._team_id}" if self._team_id else ""
        return (
            f"<WebSocketStore {self._config.shown_url}{team} {self.service.state.value} "
            f"{len(self._intake.snapshot())} messages>"
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
    def messages(self) -> ValueStream[History[HistoryItem]]:
        """Received messages in arrival order; ``messages.value`` is current."""
        return self._messages_view

    def send_message(self, query: str, team_id: str | None = None) -> str:
        """Ask ``query``; the answer arrives in :attr:`messages`. Any thread may call it
        while the store's event loop runs.

        Args:
            query: the question.
            team_id: the team to scope it to; defaults to the store's ``team_id``.

        Returns:
            The ask's id, which its ``response`` carries.

        Raises:
            OutboxFull: too many messages wait for a connection; nothing was queued.
            UsageError: the store is closed, or its event loop is closed (or, called
                from another thread, not running); nothing was sent. (The store closed
                meanwhile, or ``OutboxFull``, from another thread: on ``errors``.)
            InvalidArgument: ``query`` is empty or only whitespace, or not a string
                (a ``UsageError``); nothing was sent, from any thread.
        """
        if self._closed:
            raise UsageError(_CLOSED.format("send_message"))
        team = team_id if team_id is not None else self._team_id
        ask_request(query, team, "send_message")  # a bad query: refused here, in its words
        ask_id = new_id()
        if self._on_loop_thread("send_message"):
            self._intake.remember(ask_id)
            return self.service.send_query(query, team, message_id=ask_id)

        def send() -> None:  # on the loop's thread, where the store's ids change
            if self._closed:  # closed meanwhile: a shared connection would still send it
                raise UsageError(_CLOSED.format("send_message"))
            self._intake.remember(ask_id)
            self.service.send_query(query, team, message_id=ask_id)

        self._hand_over("send_message", self._from_thread, "send_message", send)
        return ask_id

    def reconnect(self) -> None:
        """Connect again now, with a fresh retry budget: see
        :meth:`WebSocketService.reconnect`. Any thread may call it (a UI's button)
        while the store's event loop runs. A shared store (``share=True``) reconnects
        the connection it shares.

        Raises:
            UsageError: the store is closed, or its event loop is closed (or, called
                from another thread, not running). (Called from another thread, an
                error of the service's goes to ``errors``.)
        """
        if self._closed:
            raise UsageError(_CLOSED.format("reconnect"))
        if self._on_loop_thread("reconnect"):
            self.service.reconnect()
        else:
            self._hand_over("reconnect", self._from_thread, "reconnect", self.service.reconnect)

    def clear_messages(self) -> None:
        """Empty the history; views taken before keep their contents. Any thread,
        while the store's event loop runs.

        Raises:
            UsageError: the store's event loop is closed (or, called from another
                thread, not running); nothing was cleared.
        """
        if not self._on_loop_thread("clear_messages"):
            self._hand_over("clear_messages", self.clear_messages)
            return
        self.service.forget_history()
        self._intake.clear()

    def __iter__(self) -> Iterator[Any]:
        yield self.state
        yield self.messages
        yield self.send_message
        yield self.clear_messages

    # -- more -----------------------------------------------------------------------

    @property
    def errors(self) -> Observable[NexusError]:
        """What went wrong without raising: a failed ask (``ServerError``,
        ``RequestTimeout``, with ``message_id``), malformed frames, failed
        connection attempts. A shared or team-scoped store sees only its own asks'
        failures (and those about the connection)."""
        errors: Observable[NexusError] = self.service.errors
        if self._scoped:
            errors = errors.pipe(ops.filter(self._intake.concerns))
        # The store's own (a send_message from another thread that failed).
        errors = reactivex.merge(errors, self._own_errors().stream)
        if self._scheduler is not None:
            # Bounded: a slow UI never makes errors pile up without limit.
            errors = deliver_on(errors, self._scheduler, name="errors")
        return errors

    @property
    def scheduler(self) -> abc.SchedulerBase | None:
        """The scheduler every emission is delivered on, if one was given."""
        return self._scheduler

    @property
    def max_messages(self) -> int:
        """How many received messages the history keeps."""
        return self._limit

    @property
    def batch_interval(self) -> float | None:
        """The least time between two emissions of ``messages`` (``None``: a tick)."""
        return self._interval

    @property
    def metrics(self) -> ValueStream[Metrics]:
        """The connection's ``service.metrics`` (``metrics=True``), on the store's scheduler."""
        if self._metrics_view is None:
            view, on = self.service.metrics, self._scheduler
            self._metrics_view = view if on is None else ScheduledView(view, on, self._loop)
        return self._metrics_view

    @property
    def team_id(self) -> str | None:
        """The team this store is scoped to, if any."""
        return self._team_id

    # -- cleanup ("unmount") -------------------------------------------------------

    async def close(self) -> None:
        """Stop connecting, release the connection, and complete the streams.

        A shared connection closes when the last store using it closes. It may be
        awaited from any thread or event loop while the store's loop runs: the work
        runs on that loop (if it stops meanwhile, ``close()`` waits for it to run again).
        Closing a closed store does nothing.

        Raises:
            UsageError: awaited on another loop while the store's loop is not running
                (nothing was done: run that loop again, and close the store there), or
                that loop is closed (before or during the close).
        """
        if _running_loop() is self._loop:
            await self._close()
            return
        if self._closed:  # closed, or closing, on its loop: nothing to wait for here
            return
        check_store_loop(self._loop, "close", elsewhere=True)
        await await_on(self._loop, self._close, "close")

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._detach is not None:
            self._detach()
        self._intake.stop()
        connecting, self._connecting = self._connecting, None
        cancelled = False  # (close() cancelled meanwhile: raised once closed, not swallowed)
        if connecting is not None and not connecting.done():
            cancelled = await stop_tasks(connecting)
        try:
            if self._shared:
                await pool.release(self.service)  # the last store's release closes it
            else:
                await self.service.close()
        finally:  # (cancelled in release(): the store's streams complete all the same)
            self._intake.complete()
            if self._errors is not None:
                self._errors.complete()
        if cancelled:
            raise asyncio.CancelledError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- notebooks ---------------------------------------------------------------

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        from .display import store_html

        return store_html(self.service.state.value, self._intake.snapshot(), self._config.shown_url)

    def display(self) -> Any:
        """Show a live view in a notebook that updates in place as state and
        messages change. Returns the IPython display handle."""
        from .display import live_view

        return live_view(self)

    # -- internals ---------------------------------------------------------------

    def _own_errors(self) -> Publisher[NexusError]:
        with _made:  # errors may be read on any thread: one publisher, whoever is first
            if self._errors is None:
                self._errors = Publisher("store errors")
                if self._closed:
                    self._errors.complete()
            return self._errors

    def _on_loop_thread(self, name: str) -> bool:
        """Whether this call runs on the store's loop (inside it, or on the thread that
        made the store while the loop is stopped); refuse ``name`` if the loop cannot
        do it (:func:`~nexus_reactive.store_loop.check_store_loop`)."""
        running = _running_loop()
        here = running is self._loop if running is not None else self._in_making_thread()
        check_store_loop(self._loop, name, elsewhere=not here)
        return here

    def _in_making_thread(self) -> bool:
        # The Thread, not its id: a thread started after that one ended may reuse the id.
        return threading.current_thread() is self._thread

    def _hand_over(self, name: str, call: Callable[..., object], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(call, *args)
        except RuntimeError:  # the loop closed since it was checked
            raise loop_closed(name) from None

    def _from_thread(self, what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except NexusError as exc:
            log.warning("%s from another thread failed: %s", what, exc)
            if self._errors is not None:  # else nobody subscribed to errors
                self._errors.emit(exc)

    async def _connect(self) -> None:
        try:
            await self.service.connect()
        except NexusError as exc:
            # Already visible to the application: state.value.error and errors.
            log.info("the store could not connect: %s", exc)


# The hook that makes a store lives in hook.py; it is importable from here too.
from .hook import use_websocket  # noqa: E402
