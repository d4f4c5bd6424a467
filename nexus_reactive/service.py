"""``WebSocketService``: the client class of the TypeScript design this library
mirrors, its public API. A thin facade that composes the parts, each the one owner of its state:

- :class:`~nexus_reactive.connection.Connection`: the socket, the writer, the
  attempts, the rate bucket, the ``state`` stream;
- :class:`~nexus_reactive.asks.AskTracker`: the asks in flight, deadlines, futures;
- :class:`~nexus_reactive.inbound.Receiver`: what each frame means, and the
  ``messages`` stream and ``on_message`` handlers;
- :class:`~nexus_reactive.recorder.Recorder`: the observer of message events
  (:class:`~nexus_reactive.core.events.ClientEvents`), the journal with ``persist=``.

Every decision (retry or give up, what to send next, what a reply means) is the
pure :class:`~nexus_reactive.core.ClientCore`'s and :mod:`nexus_reactive.core`'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, Self, TypeVar, overload

from reactivex import Observable

from . import codec
from .asks import AskTracker, Waiter
from .config import DEFAULT_MAX_MESSAGES, WebSocketConfig
from .connection import Connection, new_core
from .core import ClientCore, ConnectionState, Phase
from .errors import ConnectionClosed, NexusError, ProtocolError, UsageError
from .guards import check_loop_thread
from .inbound import Receiver
from .logs import enable_debug_from_env
from .messages import (
    AskMessage,
    AskResponse,
    Message,
    ResponseMessage,
    ask_request,
    new_id,
)
from .observe import observe_answer, observe_pieces, of_type
from .recorder import Recorder
from .streams import Publisher, Stream, ValueStream
from .transport import TransportFactory

__all__ = ["WebSocketService"]

log = logging.getLogger("nexus_reactive.service")
_running_loop = asyncio.events._get_running_loop
_Loop = asyncio.AbstractEventLoop | None

M = TypeVar("M", bound=Message)


class WebSocketService:
    """A client of a Nexus server: connect, send, ask, and observe.

    Args:
        config: where the server is and how to behave; see :class:`WebSocketConfig`.
        history_limit: how many received messages the journal (``persist=``)
            keeps; a store passes its ``max_messages``. Default 1,000.
        transport_factory: for tests: opens each connection's transport instead of
            aiohttp, ``(url, headers, deadline) -> Transport`` (see
            :mod:`nexus_reactive.transport`), e.g. a scripted or fault-injecting one.

    The streams are hot and live on the event loop's thread:

    - :attr:`messages`: every valid inbound message, in arrival order;
    - :attr:`state`: the :class:`ConnectionState`, replayed to each new subscriber;
    - :attr:`errors`: every :class:`NexusError` reported (malformed frames, failed
      attempts, connection-wide server errors, timeouts of unawaited asks).
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
        self._closed = False
        enable_debug_from_env()
        # The observer of message events: the journal (persist=), else nobody.
        self._recorder = Recorder(
            config.persist,
            self._core,
            history_limit or config.max_messages or DEFAULT_MAX_MESSAGES,
            self._report,
            lambda: self._loop,
        )
        self._journal = self._recorder.journal
        self.restored_history = self._recorder.restored_history
        self._events = events = self._recorder.events
        self._asks = AskTracker(self._core, events, self._report, config.request_timeout)
        self._connection = Connection(
            config, self._core, events, self._report, self._asks.fail_all, transport_factory
        )
        self._receiver = Receiver(
            self._asks, self._connection, self._journal, self._report, config.reconnect_interval
        )
        self._connection.on_frame = self._receiver.on_frame
        self._connection.deliver = self._receiver.deliver

    def __repr__(self) -> str:
        return f"<WebSocketService {self._config.shown_url} {self._core.state}>"

    def _check_thread(self, name: str) -> None:
        if _running_loop() is not self._loop:  # on the loop's own thread: nothing to check
            check_loop_thread(self._loop, name)

    def _report(self, error: NexusError) -> None:
        if isinstance(error, ProtocolError):
            log.warning("%s", error)
        self._errors.emit(error)

    def forget_history(self) -> None:
        """Clear the journal's durable history (a store's ``clear_messages`` does)."""
        self._events.cleared()

    async def flush(self) -> None:
        """Wait until everything recorded in the journal (``persist=``) is durable."""
        await self._recorder.flush()

    # -- streams and introspection -------------------------------------------------

    @property
    def config(self) -> WebSocketConfig:
        return self._config

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def messages(self) -> Stream[Message]:
        """Every valid inbound message, in arrival order."""
        return self._receiver.messages.stream

    @property
    def state(self) -> ValueStream[ConnectionState]:
        """The connection state; ``state.value`` is the current one."""
        return self._connection.state.stream

    @property
    def errors(self) -> Observable[NexusError]:
        """Every error the service reports without raising it."""
        return self._errors.stream

    @overload
    def stream(self, type: str) -> Observable[Message]: ...
    @overload
    def stream(self, type: type[M]) -> Observable[M]: ...
    def stream(self, type: str | type[M]) -> Observable[Message] | Observable[M]:
        """Inbound messages of one type: by name (``"error"``), or by class
        (``ErrorMessage``), which also types the stream for the checker."""
        return of_type(self._receiver.messages.stream, type)

    @property
    def responses(self) -> Observable[ResponseMessage]:
        """Every ``response`` message, each answer once."""
        return of_type(self._receiver.messages.stream, ResponseMessage)

    def ask_rx(
        self, query: str, team_id: str | None = None, timeout: float | None = None
    ) -> Observable[AskResponse]:
        """:meth:`ask` as a cold Observable: each subscription asks once and emits
        the answer then completes, or errors (``ServerError``, ``RequestTimeout``...).

        Compose it: ``queries.pipe(ops.flat_map(service.ask_rx))``, ``ops.retry(3)``.
        Disposing the subscription abandons the ask. It may be subscribed from any
        thread: the ask starts on the service's loop; emissions come on that thread.
        """
        return observe_answer(lambda: self._loop, lambda: self.ask(query, team_id, timeout))

    @property
    def outbox_depth(self) -> ValueStream[int]:
        """How many messages wait in the outbox, as a stream; ``.value`` is current.

        It emits when the depth changes while someone is subscribed.
        """
        return self._connection.sender.outbox_depth.stream

    @property
    def outbox_size(self) -> int:
        """How many messages wait to be written."""
        return len(self._core.outbox)

    @property
    def pending_count(self) -> int:
        """How many asks wait for their answer."""
        return len(self._asks)

    # -- lifecycle -----------------------------------------------------------------

    async def connect(self) -> None:
        """Open the connection (retrying per the policy) and wait until it is open.

        Idempotent: while connected it returns at once; while connecting or waiting
        to retry, it waits for that connection.

        Raises:
            ConfigError: no API key (checked before any network traffic).
            AuthenticationError: the server refused the credentials; not retried.
            RetriesExhausted: every attempt allowed failed.
            NexusConnectionError: a failure the policy does not retry.
            ConnectionClosed: ``disconnect()`` or ``close()`` was called meanwhile.
        """
        if self._closed:
            raise UsageError("this service is closed; create a new WebSocketService")
        self._check_thread("connect")
        connection = self._connection
        await connection.prepare()  # fail fast on credentials, before any traffic
        if connection.state.value.connected:
            return
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise UsageError("a WebSocketService is bound to the event loop it first ran on")
        await asyncio.shield(connection.start(loop))

    def disconnect(self) -> None:
        """Stop reconnecting and begin closing (synchronous, as in the TypeScript client).

        Asks awaited with :meth:`ask` fail with :class:`ConnectionClosed`. Other
        queued messages stay in the outbox for the next :meth:`connect`.

        Raises:
            UsageError: called off the event loop's thread; nothing was done.
        """
        self._check_thread("disconnect")
        reason = ConnectionClosed(
            "disconnect() was called before the answer arrived; connect() and ask again"
        )
        self._connection.stop(reason)
        # Awaited asks fail now; fire-and-forget ones stay queued for the next connect().
        self._asks.fail_awaited(reason)
        if not self._closed and self._core.state.phase is not Phase.DISCONNECTED:
            self._connection.publish(self._core.stopped())

    async def close(self) -> None:
        """Disconnect and wait until everything the service started has finished.

        The streams complete. Idempotent.
        """
        self._check_thread("close")
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
            await self.connect()
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
            UsageError: called off the event loop's thread; nothing was queued.
        """
        self._check_thread("send")
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

        Args:
            query: the question.
            team_id: optional team scope.
            message_id: the id to use; a fresh one by default.

        Returns:
            The message id, to match the ``response`` by.

        Raises:
            OutboxFull: the outbox is full; nothing was queued.
            UsageError: called off the event loop's thread; nothing was queued.
        """
        self._check_thread("send_query")
        ask_id = message_id or new_id()
        frame = codec.encode(AskMessage(id=ask_id, payload=ask_request(query, team_id)))
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
            UsageError: awaited on another event loop than the service's.
        """
        ask_id, frame, loop = self._ask_frame(query, team_id)  # one coroutine less than _ask
        return await self._asks.ask(ask_id, frame, self._connection.sender, timeout, loop=loop)

    async def _ask(
        self,
        query: str,
        team_id: str | None,
        timeout: float | None,
        on_piece: Callable[[str], None] | None = None,
    ) -> AskResponse:
        ask_id, frame, loop = self._ask_frame(query, team_id)
        sender = self._connection.sender
        return await self._asks.ask(ask_id, frame, sender, timeout, on_piece, loop)

    def _ask_frame(self, query: str, team_id: str | None) -> tuple[str, bytes, _Loop]:
        loop = _running_loop()  # looked up once per ask: it costs ~0.1 us in a running loop
        if loop is not self._loop:
            check_loop_thread(self._loop, "ask")
        failure = self._connection.failure
        if failure is not None:
            # Nothing connects until connect() is called again: say why now, not at timeout.
            raise failure
        ask_id = new_id()
        frame = codec.encode(AskMessage(id=ask_id, payload=ask_request(query, team_id)))
        return ask_id, frame, loop

    def ask_stream(
        self, query: str, team_id: str | None = None, timeout: float | None = None
    ) -> Observable[str]:
        """Ask, and observe the answer as it is written.

        Each subscription asks once. It emits the answer's pieces in order (each
        once, whatever order or repeats the server's ``response_chunk`` frames came
        in) and completes when the final ``response`` arrives; the pieces joined
        always equal the final answer (a server that does not stream gives it as
        one piece). Errors as :meth:`ask`. It may be subscribed from any thread; the
        ask runs, and the pieces are emitted, on the service's loop.
        """
        return observe_pieces(
            lambda: self._loop,
            lambda on_piece: self._ask(query, team_id, timeout, on_piece),
            query,
        )

    # -- handlers ------------------------------------------------------------------

    def on_message(self, type: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``handler`` with every inbound message of ``type``, on the loop's thread.

        It may be called from any thread (handlers are swapped in atomically).

        Returns:
            A function that unsubscribes the handler.
        """
        return self._receiver.add_handler(type, handler)

    def on_response(self, handler: Callable[[ResponseMessage], None]) -> Callable[[], None]:
        """Call ``handler`` with every ``response`` message (each answer once)."""
        return self.on_message("response", handler)
