"""The service's streams and read-only views: what :class:`~nexus_reactive.WebSocketService`
shows, as the base class it inherits them from (the facade keeps the commands).

Typed views of ``messages`` (``stream``, ``responses``) and handlers of them
(``on_message``, ``on_response``), asks as Observables (``ask_rx``, ``ask_stream``),
and the introspection of the outbox and the asks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from reactivex import Observable

from .binding import LoopBinding
from .config import WebSocketConfig
from .core import ClientCore, ConnectionState
from .errors import NexusError
from .messages import AskResponse, Message, ResponseMessage
from .metrics import Metrics, metrics_stream
from .observe import observe_answer, observe_pieces, of_type
from .streams import Publisher, Stream, ValueStream, count_subscribers

if TYPE_CHECKING:
    from .asks import AskTracker
    from .connection import Connection
    from .inbound import Receiver
    from .lazy import LazyLink
    from .metrics import Meter
    from .waiter import Waiter

__all__ = ["ServiceViews"]

M = TypeVar("M", bound=Message)


class ServiceViews(LoopBinding):
    """The streams and views of a :class:`~nexus_reactive.WebSocketService`."""

    # Set by WebSocketService.__init__.
    _config: WebSocketConfig
    _closed: bool
    _core: ClientCore[Waiter]
    _errors: Publisher[NexusError]
    _asks: AskTracker
    _connection: Connection
    _receiver: Receiver
    _meter: Meter | None
    _lazy: LazyLink | None

    if TYPE_CHECKING:

        async def _ask(
            self,
            query: str,
            team_id: str | None,
            timeout: float | None,
            on_piece: Callable[[str], None] | None = None,
            caller: str = "ask",
        ) -> AskResponse: ...

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
        """Every valid inbound message, in arrival order. With ``lazy=True`` a
        subscriber (here or on a typed view) needs the connection: it opens it."""
        return self._receiver.messages.stream

    @property
    def state(self) -> ValueStream[ConnectionState]:
        """The connection state; ``state.value`` is the current one. Watching it never
        opens a lazy connection (``lazy=True``)."""
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

    def on_message(self, type: str, handler: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``handler`` with every inbound message of ``type``, on the loop's thread.

        It may be called from any thread (handlers are swapped in atomically). With
        ``lazy=True`` a handler needs the connection until unsubscribed.

        Returns:
            A function that unsubscribes the handler.
        """
        remove = self._receiver.add_handler(type, handler)
        if self._lazy is None:
            return remove
        release = self._lazy.hold()
        return lambda: (remove(), release())[-1]

    def on_response(self, handler: Callable[[ResponseMessage], None]) -> Callable[[], None]:
        """Call ``handler`` with every ``response`` message (each answer once)."""
        return self.on_message("response", handler)

    def ask_rx(
        self, query: str, team_id: str | None = None, timeout: float | None = None
    ) -> Observable[AskResponse]:
        """:meth:`ask` as a cold Observable: each subscription asks once and emits
        the answer then completes, or errors (``ServerError``, ``RequestTimeout``...).

        Compose it: ``queries.pipe(ops.flat_map(service.ask_rx))``, ``ops.retry(3)``.
        Disposing the subscription abandons the ask. It may be subscribed from any
        thread: the ask starts on the service's loop; emissions come on that thread.
        """

        return observe_answer(
            lambda: self._loop, lambda: self._ask(query, team_id, timeout, None, "ask_rx")
        )

    @property
    def metrics(self) -> ValueStream[Metrics]:
        """Counters and latencies, ``metrics=True`` (:class:`~nexus_reactive.Metrics`)."""
        return metrics_stream(self._meter)

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
            lambda on_piece: self._ask(query, team_id, timeout, on_piece, "ask_stream"),
            query,
        )

    def demand_from(self, stream: Stream[Any], loop: asyncio.AbstractEventLoop) -> bool:
        """With ``lazy=True``, count the subscribers of ``stream`` (a view of
        :attr:`messages`, such as a store's ``messages``) as needing the connection,
        as those of :attr:`messages` are; and bind the service to ``loop`` now if it
        has no loop yet, so that demand from any thread reaches it. Without ``lazy``
        nothing is done. :func:`~nexus_reactive.use_websocket` calls it.

        Returns:
            Whether the service is lazy.
        """
        lazy = self._lazy
        if lazy is None:
            return False
        if self._loop is None:
            self._adopt(loop)
        count_subscribers(stream, lazy.hold)
        return True
