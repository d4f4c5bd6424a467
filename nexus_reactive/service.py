"""``WebSocketService``: the TypeScript design's client class, this library's public API.

A thin facade that composes the parts, each the one owner of its state: the
:class:`~nexus_reactive.connection.Connection` (socket, writer, attempts, rate bucket,
``state``), the :class:`~nexus_reactive.asks.AskTracker` (asks in flight, deadlines,
futures), the :class:`~nexus_reactive.inbound.Receiver` (what each frame means;
``messages``, ``on_message``), the :class:`~nexus_reactive.recorder.Recorder` (message
events, the journal with ``persist=``) and the :class:`~nexus_reactive.metrics.Meter`.
Every decision (retry or give up, what to send next, what a reply means) is the pure
:class:`~nexus_reactive.core.ClientCore`'s and :mod:`nexus_reactive.core`'s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Self

from . import codec
from .asks import AskTracker
from .client_core import new_core
from .config import DEFAULT_MAX_MESSAGES, WebSocketConfig
from .connection import Connection
from .core import ClientCore, Phase
from .core.demand import REASON_RECONNECT
from .errors import ConnectionClosed, NexusError, ProtocolError, UsageError
from .guards import check_awaited_on, check_timeout
from .inbound import Receiver
from .lazy import LazyLink
from .logs import enable_debug_from_env
from .messages import AskMessage, AskResponse, Message, ask_request, new_id
from .metrics import new_meter
from .recorder import Recorder
from .streams import Publisher
from .transport import TransportFactory
from .views import ServiceViews
from .waiter import Waiter

__all__ = ["WebSocketService"]

log = logging.getLogger("nexus_reactive.service")
_running_loop = asyncio.events._get_running_loop
_get_ident = threading.get_ident
_encode = codec.encode_fast
_ASK_HEAD, _ASK_MID, _ASK_TAIL = codec.ASK_HEAD, codec.ASK_MID, codec.ASK_TAIL
_Loop = asyncio.AbstractEventLoop | None
_CLOSED = "{}(): this service is closed: nothing more is sent; create a new WebSocketService"


class WebSocketService(ServiceViews):
    """A client of a Nexus server: connect, send, ask, and observe.

    Args:
        config: where the server is and how to behave; see :class:`WebSocketConfig`.
        history_limit: how many received messages the journal (``persist=``)
            keeps; a store passes its ``max_messages``. Default 1,000.
        transport_factory: for tests: opens each connection's transport instead of
            aiohttp, ``(url, headers, deadline) -> Transport`` (see
            :mod:`nexus_reactive.transport`), e.g. a scripted or fault-injecting one.

    The streams (and views, from :class:`~nexus_reactive.views.ServiceViews`) are
    hot and live on the event loop's thread:

    - :attr:`messages`: every valid inbound message, in arrival order;
    - :attr:`state`: the :class:`ConnectionState`, replayed to each new subscriber;
    - :attr:`errors`: every :class:`NexusError` reported (malformed frames, failed
      attempts, connection-wide server errors, timeouts of unawaited asks);
    - :attr:`metrics` (``metrics=True``): counters and latencies, a current value.
    """

    def __init__(
        self,
        config: WebSocketConfig,
        *,
        history_limit: int | None = None,
        transport_factory: TransportFactory | None = None,
    ) -> None:
        self._config = config
        self._core: ClientCore[Waiter] = new_core(config)
        self._errors: Publisher[NexusError] = Publisher("errors")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_says_thread = False  # (see LoopBinding)
        self._closed = self._closing = False
        enable_debug_from_env()
        # The observer of message events: the journal (persist=), else nobody.
        keep = history_limit or config.max_messages or DEFAULT_MAX_MESSAGES
        self._recorder = Recorder(config, self._core, keep, self._report)
        self._journal = self._recorder.journal
        self.restored_history = self._recorder.restored_history
        self._events = events = self._recorder.events
        self._meter = meter = new_meter(config, self._core, lambda: self._loop)  # metrics=
        self._asks = AskTracker(self._core, events, self._report, config.request_timeout, meter)
        self._connection = Connection(
            config, self._core, events, self._report, self._asks.fail_all, transport_factory, meter
        )
        self._receiver = Receiver(
            self._asks, self._connection, self._journal, self._report, config.reconnect_interval
        )
        self._connection.on_frame = self._receiver.on_frame
        self._connection.on_frames = self._receiver.on_frames
        self._connection.deliver = self._receiver.deliver
        # lazy=True: demand (subscribers, asks, the outbox) opens and closes the link.
        self._lazy: LazyLink | None = None
        if config.lazy:
            self._lazy = LazyLink.install(
                config.lazy_grace,
                self._core,
                self._connection,
                self._asks,
                self._receiver.messages.stream,
                self._bind,
                lambda: self._loop,
            )

    def __repr__(self) -> str:
        return f"<WebSocketService {self._config.shown_url} {self._core.state}>"

    def _report(self, error: NexusError) -> None:
        if isinstance(error, ProtocolError):
            log.warning("%s", error)
        self._errors.emit(error)

    def forget_history(self) -> None:
        """Clear the journal's durable history (a store's ``clear_messages`` does)."""
        self._events.cleared()

    async def flush(self) -> None:
        """Wait until everything recorded in the journal (``persist=``) is durable.

        Raises:
            PersistenceError: the journal closed (with the service) before it could
                commit it: those messages are not durable.
        """
        await self._recorder.flush()

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection (retrying per the policy) and wait until it is open.

        Idempotent: while connected it returns at once; while connecting or waiting
        to retry, it waits for that connection. With ``lazy=True`` the connection
        then stays open while something needs it (see ``lazy_grace``).

        Raises:
            ConfigError: no API key (checked before any network traffic).
            AuthenticationError: the server refused the credentials; not retried.
            RetriesExhausted: every attempt allowed failed.
            NexusConnectionError: a failure the policy does not retry.
            ConnectionClosed: ``disconnect()`` or ``close()`` was called meanwhile.
        """
        if self._closed or self._closing:
            raise UsageError("this service is closed; create a new WebSocketService")
        self._check_thread("connect")
        connection = self._connection
        await connection.prepare()  # fail fast on credentials, before any traffic
        if connection.state.value.connected:
            return
        loop = self._bind("connect")
        lazy = self._lazy
        if lazy is None:
            await asyncio.shield(connection.start(loop))
            return
        lazy.resume()
        release = lazy.hold()  # awaiting connect() needs the connection
        try:
            await asyncio.shield(connection.start(loop))
        finally:
            release()

    def reconnect(self) -> None:
        """Connect again now, with a fresh retry budget (``state.attempt`` 0).

        From any state but closed: a backoff wait ends and the next attempt starts at
        once; an attempt under way, or an open connection, is dropped and replaced
        by a new one (asks on the wire go again on it, as after any reconnect, and
        queued messages stay queued: nothing is lost); a client that gave up (a
        fatal error such as HTTP 401, or attempts exhausted) or was disconnected
        starts again: the way to retry once the cause is fixed. ``state`` shows
        ``connecting`` with ``reason`` "reconnect() was called" at once. Repeated
        calls restart again (the last one wins). ``await connect()`` to wait for
        the outcome. With ``lazy=True`` it opens even while idle; then
        ``lazy_grace`` applies.

        Raises:
            UsageError: the service is closed (or closing); called off the event
                loop's thread, or without a running loop; nothing was done.
        """
        self._check_thread("reconnect")
        if self._closed or self._closing:
            raise UsageError("reconnect(): this service is closed; create a new WebSocketService")
        loop = self._bind("reconnect")
        if self._lazy is not None:
            self._lazy.resume()
        self._connection.restart(loop, REASON_RECONNECT)
        if self._lazy is not None:
            self._lazy.restarted()  # if nothing needs it, the grace counts from now

    def disconnect(self) -> None:
        """Stop reconnecting and begin closing (synchronous, as in the TypeScript client).

        Asks awaited with :meth:`ask` fail with :class:`ConnectionClosed`. Other
        queued messages stay in the outbox for the next :meth:`connect`.

        Raises:
            UsageError: called off the event loop's thread; nothing was done.
        """
        self._check_thread("disconnect")
        if self._lazy is not None:
            self._lazy.suspend()  # demand opens nothing until connect() or reconnect()
        reason = ConnectionClosed(
            "disconnect() was called before the answer arrived; connect() and ask again"
        )
        self._connection.stop(reason)
        self._asks.fail_awaited(reason)  # (their frames leave the outbox: its depth drops)
        self._connection.sender.outbox_depth.refresh()
        if not self._closed and self._core.state.phase is not Phase.DISCONNECTED:
            self._connection.publish(self._core.stopped())

    async def close(self) -> None:
        """Disconnect and wait until everything the service started has finished.

        The streams complete. Idempotent.
        """
        self._check_thread("close")
        self._closing = True
        if self._lazy is not None:
            self._lazy.close()
        self.disconnect()
        await self._connection.wait_finished()
        if not self._closed:
            self._closed = True
            self._asks.close()
            await self._recorder.close(len(self._core.outbox))
            self._connection.close()
            self._receiver.messages.complete()
            self._errors.complete()

    async def __aenter__(self) -> Self:
        try:
            if self._lazy is None:
                await self.connect()
            else:  # lazy: bound to this loop, the credentials checked; demand connects
                self._bind("__aenter__")
                await self._connection.prepare()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # -- sending -------------------------------------------------------------------

    def send(self, message: Message | Mapping[str, Any]) -> None:
        """Validate a message and send it, or queue it until connected.

        An ``ask`` sent this way is tracked like any other: sent again after a
        reconnect, its answer delivered once to ``messages`` and ``on_response``.

        Raises:
            ProtocolError: not a valid message; nothing was sent.
            OutboxFull: the outbox is full; nothing was queued.
            UsageError: called off the event loop's thread, or the service is
                closed (or closing); nothing was queued.
        """
        self._check_thread("send")
        if self._closed or self._closing:  # (from close()'s start: nothing would send it)
            raise UsageError(_CLOSED.format("send"))
        typed = codec.to_message(message)
        frame = codec.encode(typed)
        if isinstance(typed, AskMessage):
            self._asks.track(typed.id, frame, None)
        else:
            # Keyed only for a journal: the writer reports keyed frames as sent.
            key = new_id() if self._journal is not None else None
            self._core.submit(frame, key)
            if key is not None:
                self._events.queued(key, False, frame)
        self._connection.sender.kick()

    def send_query(
        self, query: str, team_id: str | None = None, *, message_id: str | None = None
    ) -> str:
        """Send an ``ask`` without waiting for it; its answer comes to the streams.

        No answer within ``request_timeout`` (counted from this call) reports a
        ``RequestTimeout`` on ``errors``. Before the service has an event loop this
        may be called from any thread, loop or none: the ask is queued at once, and
        its deadline is timed once the service runs on its loop, still from this call.

        Args:
            query: the question.
            team_id: optional team scope.
            message_id: the id to use; a fresh one by default.

        Returns:
            The message id, to match the ``response`` by.

        Raises:
            OutboxFull: the outbox is full; nothing was queued.
            UsageError: called off the event loop's thread, the service closed (or
                closing), an empty or blank ``query`` (InvalidArgument); nothing queued.
        """
        self._check_thread("send_query")
        if self._closed or self._closing:  # (from close()'s start: nothing would send it)
            raise UsageError(_CLOSED.format("send_query"))
        ask_id = message_id or new_id()
        payload = ask_request(query, team_id, "send_query")
        frame = codec.encode(AskMessage(id=ask_id, payload=payload))
        self._asks.track(ask_id, frame, None)
        self._connection.sender.kick()
        return ask_id

    async def ask(
        self, query: str, team_id: str | None = None, timeout: float | None = None
    ) -> AskResponse:
        """Ask a question and wait for exactly its answer, across reconnects.

        Args:
            query: the question.
            team_id: optional team scope.
            timeout: seconds to wait; defaults to ``request_timeout``.

        Raises:
            ServerError: the server answered with an ``error`` (see ``.code``).
            RequestTimeout: no answer in time.
            ConnectionClosed: ``disconnect()`` was called meanwhile.
            NexusConnectionError: the service gave up reconnecting.
            OutboxFull: the outbox is full; nothing was queued.
            UsageError: awaited on another event loop than the service's, the service
                is closed (or closing), or an empty or blank ``query`` or a ``timeout``
                not a positive finite number of seconds (:class:`InvalidArgument`).
        """
        loop = self._loop  # (AskTracker.ask, inline: one coroutine less per ask)
        if (  # _ask_frame, inline for the common case: all its checks pass
            self._loop_says_thread
            and loop._thread_id == _get_ident()  # type: ignore[union-attr]
            and not self._closing  # (close() has begun: see _ask_frame)
            and self._connection.failure is None
            and type(query) is str
            and query
            and team_id is None
            and timeout is None
            and not query.isspace()
        ):
            ask_id = new_id()
            frame = b"".join((_ASK_HEAD, _encode(query), _ASK_MID, ask_id.encode(), _ASK_TAIL))
        else:  # each check in its order, with its error
            ask_id, frame, loop = self._ask_frame(query, team_id, "ask", timeout)
        asks, sender = self._asks, self._connection.sender
        future, direct = asks.begin(ask_id, frame, sender, timeout, None, loop)
        try:
            if direct:
                await sender.send_now()
            return await future
        except BaseException:  # (not a finally: an answered ask needs no look)
            if not future.done() or future.cancelled():
                asks.abandon(ask_id)
            raise

    async def _ask(
        self,
        query: str,
        team_id: str | None,
        timeout: float | None,
        on_piece: Callable[[str], None] | None = None,
        caller: str = "ask",
    ) -> AskResponse:
        ask_id, frame, loop = self._ask_frame(query, team_id, caller, timeout)
        sender = self._connection.sender
        return await self._asks.ask(ask_id, frame, sender, timeout, on_piece, loop)

    def _ask_frame(
        self, query: str, team_id: str | None, caller: str, timeout: float | None
    ) -> tuple[str, bytes, _Loop]:
        loop = self._loop
        # On the thread running an asyncio loop, that loop is the running one: ~30 ns to
        # tell, where looking it up is a getpid() system call on CPython 3.11 (~0.15 us).
        if not (self._loop_says_thread and loop._thread_id == _get_ident()):  # type: ignore[union-attr]
            loop = _running_loop()
            if loop is not self._loop:
                check_awaited_on(self._loop, caller)
        if self._closing:  # (from close()'s start: nothing would answer or time it)
            raise UsageError(_CLOSED.format(caller))
        failure = self._connection.failure
        if failure is not None:
            # Nothing connects until connect() or reconnect(): say why now, not at timeout.
            raise failure
        check_timeout(timeout, caller)
        ask_id = new_id()
        # ask_request's check and the encoding, inline for the common case
        if type(query) is str and query and team_id is None and not query.isspace():
            parts = (_ASK_HEAD, _encode(query), _ASK_MID, ask_id.encode(), _ASK_TAIL)
            return ask_id, b"".join(parts), loop
        payload = ask_request(query, team_id, caller)
        return ask_id, _encode(AskMessage(id=ask_id, payload=payload)), loop
