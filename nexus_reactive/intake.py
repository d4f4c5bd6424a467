"""A store's history buffer: what each received message does to it (the hot path).

:class:`Intake` owns the history a :class:`~nexus_reactive.store.WebSocketStore`
shows: the buffer and its live window, the answers being streamed, the ids of the
store's own asks (a scoped store shows only their answers), and when ``messages``
emits. Its :meth:`Intake.on_message` is attached directly to the service's
``messages`` stream: no layer in between.

Appending is O(1), whatever the history's length; every emission is an immutable
:class:`~nexus_reactive.history.History` view that shares storage with the buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from .config import DEFAULT_MAX_MESSAGES, WebSocketConfig
from .config_checks import check_store_options
from .derived import DerivedPublisher
from .errors import NexusError
from .history import History, HistoryItem
from .messages import (
    AskResponse,
    AuthOkMessage,
    ChallengeMessage,
    ErrorMessage,
    Message,
    PartialResponse,
    ResponseChunkMessage,
    ResponseMessage,
    Usage,
)
from .streams import ValueStream

if TYPE_CHECKING:
    from .fanout import Router

__all__ = ["Intake", "history_options"]

# Handshake frames are the connection's business, not the conversation's.
NOT_HISTORY = frozenset({ChallengeMessage, AuthOkMessage})
# Answers to an ask, by its id: a scoped store shows only those to its own asks.
_ANSWERS = frozenset({ResponseMessage, ErrorMessage, ResponseChunkMessage})


# Equal usage counts, one object: a stored response whose usage equals the previous
# one's refers to that object, 40 bytes less per message while a server's counts repeat
# (the payload is immutable and the two are equal: nobody can tell). Compared with the
# last one only: when counts vary, that costs one comparison; no table to look up.
_share = msgspec.structs.force_setattr  # msgspec >= 0.18.5


def history_options(
    config: WebSocketConfig, max_messages: int | None, batch_interval: float | None
) -> tuple[int, float | None]:
    """A store's ``max_messages`` and ``batch_interval``, checked; by default the
    config's own fields (deprecated; honoured until they go).

    Raises:
        ConfigError: either is invalid.
    """
    if max_messages is None:
        max_messages = config.max_messages or DEFAULT_MAX_MESSAGES
    if batch_interval is None:
        batch_interval = config.batch_interval
    check_store_options(max_messages, batch_interval)
    return max_messages, batch_interval


class Intake:
    """The history of one store, and the ``messages`` stream that shows it.

    Args:
        loop: the event loop messages arrive on (flushes are scheduled on it).
        limit: how many received messages the history keeps.
        interval: ``messages`` emits at most once per this many seconds; ``None``:
            at most once per event-loop tick.
        scoped: keep only the answers to this store's own asks (see :meth:`remember`).
        router: a shared connection's :class:`~nexus_reactive.fanout.Router`, which
            hands this intake its own answers and the broadcasts (so it filters
            nothing itself); ``None``: attach :attr:`sink` to ``messages`` yourself.
    """

    __slots__ = (
        "_buffer",
        "_filter",
        "_flush_handle",
        "_flush_scheduled",
        "_interval",
        "_loop",
        "_max",
        "_messages",
        "_own",
        "_own_order",
        "_patches",
        "_router",
        "_scoped",
        "_start",
        "_stopped",
        "_streaming",
        "_usage",
        "sink",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int,
        interval: float | None,
        *,
        scoped: bool,
        router: Router | None = None,
    ) -> None:
        self._loop = loop
        self._max = limit
        self._interval = interval
        self._scoped = scoped
        # Drop other stores' answers here, unless a router sends this store its own only.
        self._filter = scoped and router is None
        self._router = router
        # Live items are _buffer[_start:]; _patches holds the in-progress answers by
        # slot, _streaming their slot and text by ask id.
        self._buffer: list[HistoryItem] = []
        self._start = 0
        self._patches: dict[int, HistoryItem] = {}
        self._streaming: dict[str, tuple[int, str, int]] = {}
        # The ids of this store's own asks (a scoped store shows only their answers),
        # made on its first ask: an idle store keeps no empty containers.
        self._own: set[str] | None = None
        self._own_order: deque[str] | None = None
        self._flush_scheduled = False
        self._flush_handle: asyncio.Handle | None = None
        self._stopped = False
        self._usage: Usage | None = None  # the last usage stored: the next equal one shares it
        self._messages: DerivedPublisher[History[HistoryItem]] = DerivedPublisher(
            self.snapshot, "messages"
        )
        #: What takes each received message: :meth:`on_message`, bound once (the
        #: router knows a store by it).
        self.sink: Callable[[Message], None] = self.on_message
        if router is not None:
            router.join(self.sink)

    @property
    def stream(self) -> ValueStream[History[HistoryItem]]:
        """``messages``: the history, emitted at most once per tick or interval."""
        return self._messages.stream

    def owns(self, ask_id: str) -> bool:
        """Whether ``ask_id`` is one of the store's own recent asks (scoped store)."""
        own = self._own
        return own is not None and ask_id in own

    def concerns(self, error: NexusError) -> bool:
        """Whether a scoped store shows ``error``: about one of its asks, or about none."""
        message_id = getattr(error, "message_id", None)
        return not message_id or self.owns(message_id)

    def remember(self, ask_id: str) -> None:
        """Note an ask of the store's own, so that a scoped store shows its answer.

        Call it on the loop's thread, before the ask is queued.
        """
        if not self._scoped:
            return
        own, order = self._own, self._own_order
        if own is None or order is None:
            own, order = self._own, self._own_order = set(), deque()
        own.add(ask_id)
        order.append(ask_id)
        router = self._router
        if router is not None:
            router.claim(ask_id, self.sink)
        if len(order) > max(10_000, 2 * self._max):
            forgotten = order.popleft()
            own.discard(forgotten)
            if router is not None:
                router.release(forgotten, self.sink)

    def restore(self, items: list[Message]) -> None:
        """Put a journal's history of the previous life in front (handshakes left out)."""
        for restored in items:
            if type(restored) not in NOT_HISTORY:
                self._append(restored)

    def clear(self) -> None:
        """Empty the history; views taken before keep their contents."""
        self._buffer = []
        self._start = 0
        self._patches = {}
        # Answers still streaming keep their text and reappear with the next piece.
        self._streaming = {k: (-1, text, n) for k, (_, text, n) in self._streaming.items()}
        self._messages.publish()

    def stop(self) -> None:
        """Take and emit no more (the store is closing)."""
        self._stopped = True
        router = self._router
        if router is not None:
            router.leave(self.sink, list(self._own_order or ()))
        if self._flush_handle is not None:
            self._flush_handle.cancel()

    def complete(self) -> None:
        """Complete ``messages`` (the store has closed)."""
        self._messages.complete()

    def on_message(self, message: Message) -> None:
        """Take one received message into the history (the service's sink)."""
        # Hot path: checks on type() (isinstance against msgspec classes is slower),
        # and the common case (append a response, nothing streaming, not scoped) first.
        kind = type(message)
        if kind is ResponseMessage and not self._streaming and not self._filter:
            payload: AskResponse = message.payload  # type: ignore[assignment]  # a response's
            usage = payload.usage
            if usage is not None:  # inline: a call per message is measurable
                last = self._usage
                if usage == last and usage is not last:
                    _share(payload, "usage", last)
                else:
                    self._usage = usage
            buffer = self._buffer
            buffer.append(message)
            if len(buffer) - self._start > self._max:
                self._evict()
        elif kind in NOT_HISTORY:
            return
        elif self._filter and kind in _ANSWERS and message.id and not self.owns(message.id):
            return  # another team's answer, or nobody's
        elif kind is ResponseChunkMessage:
            self._grow(message)  # type: ignore[arg-type]
        elif self._streaming and message.id in self._streaming:
            self._finish(message)  # type: ignore[arg-type]
        else:
            self._append(message)
        if not self._flush_scheduled:
            self._schedule()

    def on_messages(self, messages: list[Message]) -> None:
        """:meth:`on_message` for each of ``messages``, in order: what one socket read
        brought, with the common case (responses, nothing streaming, not scoped) in one
        loop instead of a call each."""
        if self._streaming or self._filter:
            for message in messages:
                self.on_message(message)
            return
        buffer, limit = self._buffer, self._max
        for index, message in enumerate(messages):
            if type(message) is not ResponseMessage:  # the rest, each its own way
                for rest in messages[index:]:
                    self.on_message(rest)
                return
            payload: AskResponse = message.payload  # a response's
            usage = payload.usage
            if usage is not None:  # as on_message does
                last = self._usage
                if usage == last and usage is not last:
                    _share(payload, "usage", last)
                else:
                    self._usage = usage
            buffer.append(message)
            if len(buffer) - self._start > limit:
                self._evict()
                buffer = self._buffer  # compacting makes a new list
        if messages and not self._flush_scheduled:
            self._schedule()

    def _schedule(self) -> None:
        """Emit the history once this tick (or ``batch_interval``) is over."""
        self._flush_scheduled = True
        if self._interval is None:
            self._flush_handle = self._loop.call_soon(self._flush)
        else:
            self._flush_handle = self._loop.call_later(self._interval, self._flush)

    def snapshot(self) -> History[HistoryItem]:
        """The history now, as an immutable view."""
        patches = dict(self._patches) if self._patches else None
        return History(self._buffer, self._start, len(self._buffer), patches)

    def _lean(self, item: HistoryItem) -> None:
        """Let a response to be stored share the previous one's equal usage (see above)."""
        if type(item) is ResponseMessage and (usage := item.payload.usage) is not None:
            last = self._usage
            if usage == last and usage is not last:
                _share(item.payload, "usage", last)
            else:
                self._usage = usage

    def _append(self, item: HistoryItem) -> int:
        """Append to the history; return the item's slot in ``_buffer``."""
        self._lean(item)
        self._buffer.append(item)
        if len(self._buffer) - self._start > self._max:
            self._evict()
        return len(self._buffer) - 1

    def _evict(self) -> None:
        self._start += 1
        # Compact once half the buffer is dead: amortised O(1) per message, and
        # views taken before keep the old list.
        if self._start >= self._max:
            self._compact()

    def _compact(self) -> None:
        start = self._start
        self._buffer = self._buffer[start:]
        self._start = 0
        self._patches = {k - start: v for k, v in self._patches.items() if k >= start}
        self._streaming = {
            k: (slot - start if slot >= start else -1, text, n)
            for k, (slot, text, n) in self._streaming.items()
        }

    def _grow(self, chunk: ResponseChunkMessage) -> None:
        slot, text, pieces = self._streaming.get(chunk.id, (-1, "", 0))
        text += chunk.payload.delta
        partial = PartialResponse(chunk.id, AskResponse(answer=text), pieces + 1)
        if slot < self._start:  # new, cleared, or fallen out of the bounded history
            slot = self._append(partial)
        else:
            self._buffer[slot] = partial
        self._patches[slot] = partial
        self._streaming[chunk.id] = (slot, text, pieces + 1)

    def _finish(self, response: ResponseMessage) -> None:
        slot, _, _ = self._streaming.pop(response.id)
        if slot < self._start:
            self._append(response)
            return
        # Views taken while it streamed keep their patch; later ones see the answer.
        self._lean(response)
        self._buffer[slot] = response
        del self._patches[slot]

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._stopped:
            self._messages.publish()
