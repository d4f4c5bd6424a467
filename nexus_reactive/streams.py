"""The library's observables: hot streams and streams that hold a current value.

These are small :class:`reactivex.Observable` subclasses rather than Subjects: the
library is the only producer, always on the event loop's thread, so a Subject's
lock and checks would be paid on every message for nothing. Emitting is one loop
over a tuple of bound ``on_next`` methods.

Only the producer can emit. A stream is created with its :class:`Publisher`
(:class:`ValuePublisher`, :class:`DerivedPublisher`): the module that owns the
data keeps the publisher and hands out ``publisher.stream``, which consumers can
only subscribe to and read.

Emission is serialized: a value emitted while the subscribers are being told
about another one (a subscriber that reacts by changing the state, say) is
delivered after that round, to every subscriber. So all subscribers see the same
values in the same order, and each one's last value is the stream's ``.value``.
Outside a round (the usual case) emitting costs one flag check more than a loop
over the subscribers.

A subscriber that raises is logged and unsubscribed; it never breaks the receive
loop or starves the other subscribers.

Delivery on another thread (a UI's scheduler) is in :mod:`nexus_reactive.scheduled`.
"""

from __future__ import annotations

import html
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

from .stream_sinks import Sink, direct, lone_batch, sinks

__all__ = [
    "Hold",
    "Publisher",
    "Stream",
    "ValuePublisher",
    "ValueStream",
    "count_subscribers",
]

T = TypeVar("T")
#: Called as a subscription starts; returns what to call when it ends.
Hold = Callable[[], Callable[[], None]]
log = logging.getLogger("nexus_reactive.streams")

# Queued in a stream's backlog: complete once the values before it are delivered.
_COMPLETE: Any = object()


class Stream(Observable[T], Generic[T]):
    """A hot stream: subscribers receive what is emitted after they subscribe.

    Read-only: its :class:`Publisher` emits into it.
    """

    def __init__(self, name: str = "stream") -> None:
        super().__init__()
        self._name = name
        self._observers: tuple[abc.ObserverBase[T], ...] = ()
        self._sinks: tuple[Callable[[T], None], ...] = ()
        # The lone internal sink (attach()), if alone: called without a round's bookkeeping.
        self._direct: Callable[[T], None] | None = None
        self._batch: Callable[[list[T]], None] | None = None  # its batch call, if any
        self._completed = False
        # Serialized emission: True while a round of deliveries runs; what is
        # emitted meanwhile waits in the backlog, in order (made on first use: an idle
        # stream holds no empty deque, ~600 bytes).
        self._emitting = False
        self._backlog: deque[Any] | None = None
        self._hold: Hold | None = None  # see count_subscribers

    @property
    def observer_count(self) -> int:
        """How many subscribers this stream has now."""
        return len(self._observers)

    @property
    def name(self) -> str:
        """What the stream is called in logs and reprs."""
        return self._name

    @property
    def completed(self) -> bool:
        """Whether the stream has ended."""
        return self._completed

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self._completed:
            observer.on_completed()
            return Disposable()
        self._add(observer)
        return self._held(lambda: self._remove(observer))

    def _held(self, dispose: Callable[[], None]) -> abc.DisposableBase:
        """A subscription's disposable: it also releases the subscription's hold."""
        hold = self._hold
        if hold is None:
            return Disposable(dispose)
        release = hold()

        def both() -> None:
            dispose()
            release()

        return Disposable(both)

    def attach(
        self,
        sink: Callable[[T], None],
        on_completed: Callable[[], None] | None = None,
        batch: Callable[[list[T]], None] | None = None,
    ) -> Callable[[], None]:
        """Call ``sink`` with every value, without reactivex's per-call observer
        wrapper and without a replay: the cheapest subscription, for the library's
        own layers on the hot path (the store). Returns a function that detaches it.

        ``batch``: what ``sink`` does for each of a list of values, in one call; used
        for a batch (:meth:`_deliver_all`) while this sink is the only subscriber.
        """
        observer = cast(abc.ObserverBase[T], Sink(sink, on_completed, batch))
        self._add(observer)
        return lambda: self._remove(observer)

    def _add(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = (*self._observers, observer)
        self._sinks = sinks(self._observers)
        self._direct = direct(self._observers)
        self._batch = lone_batch(self._observers)

    def _remove(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)
        self._sinks = sinks(self._observers)
        self._direct = direct(self._observers)
        self._batch = lone_batch(self._observers)

    # -- the producer's side (through a Publisher only) ------------------------------

    def _deliver(self, value: T) -> None:
        direct = self._direct
        if direct is not None and not self._emitting:
            # The library's own sink alone: it neither emits here nor calls out, so no
            # round can interleave with it.
            try:
                direct(value)
            except Exception:
                self._drop_sink(direct)
            return
        if self._emitting:  # re-entered from a subscriber: after this round
            self._later(value)
            return
        if not self._sinks:  # nobody listens (service.messages of a bare ask, often)
            return
        self._emitting = True
        try:
            observers, sinks = self._observers, self._sinks  # a consistent snapshot
            for sink in sinks:
                try:
                    sink(value)
                except Exception:
                    self._drop(observers, sinks, sink)
            if self._backlog:
                self._drain()
        finally:
            self._emitting = False

    def _deliver_all(self, values: list[T], stop_if: object = None) -> int:
        """:meth:`_deliver` each of ``values`` in turn, as one round: what one socket
        read brought arrives in one call. Return how many were delivered: all of them,
        or fewer when ``stop_if`` became truthy while the subscribers were told of the
        last one delivered (the receiver's handlers, added by a subscriber: the caller
        delivers the rest its own way).

        Each subscriber sees the values in order, and anything emitted while one is
        delivered (by a subscriber) is delivered before the next one, as one by one.
        """
        batch = self._batch
        if batch is not None and not self._emitting:  # the library's own sink alone
            try:
                batch(values)
            except Exception:
                self._drop_sink(batch)
            return len(values)
        if self._emitting:  # re-entered from a subscriber: after this round
            for value in values:
                self._later(value)
            return len(values)
        self._emitting = True
        delivered = 0
        try:
            for value in values:
                delivered += 1
                sinks = self._sinks  # read for each value: subscribers come and go
                if sinks:
                    observers = self._observers  # the snapshot of sinks (nothing ran between)
                    for sink in sinks:
                        try:
                            sink(value)
                        except Exception:
                            self._drop(observers, sinks, sink)
                    if self._backlog:
                        self._drain()
                if stop_if:
                    break
        finally:
            self._emitting = False
        return delivered

    def _drop_sink(self, call: object) -> None:
        """The library's lone sink raised in ``call`` (its ``on_next`` or its batch call):
        logged (with the exception being handled) and detached."""
        log.exception("a subscriber of %s raised; it was unsubscribed", self._name)
        for observer in self._observers:
            if isinstance(observer, Sink) and call in (observer.on_next, observer.batch):
                self._remove(observer)

    def _later(self, value: Any) -> None:
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append(value)

    def _drain(self) -> None:
        backlog = self._backlog
        while backlog:
            value = backlog.popleft()
            if value is _COMPLETE:
                self._complete_now()
                continue
            observers, sinks = self._observers, self._sinks
            for sink in sinks:
                try:
                    sink(value)
                except Exception:
                    self._drop(observers, sinks, sink)

    def _drop(
        self,
        observers: tuple[abc.ObserverBase[T], ...],
        sinks: tuple[Callable[[T], None], ...],
        sink: Callable[[T], None],
    ) -> None:
        log.exception("a subscriber of %s raised; it was unsubscribed", self._name)
        # By position in the snapshot: other observers may have left (and the
        # tuples been rebuilt) during this very emission.
        self._remove(observers[sinks.index(sink)])

    def _complete(self) -> None:
        """End the stream: every subscriber gets ``on_completed`` (after any value
        still being delivered) and is released."""
        if self._completed:
            return
        self._completed = True
        if self._emitting:
            self._later(_COMPLETE)
            return
        self._complete_now()

    def _complete_now(self) -> None:
        observers, self._observers, self._sinks = self._observers, (), ()
        self._direct = self._batch = None
        if self._backlog is not None:
            self._backlog.clear()  # emitted after the end: nobody is left to tell
        for observer in observers:
            try:
                observer.on_completed()
            except Exception:
                log.exception("a subscriber of %s raised on completion", self._name)


def count_subscribers(stream: Stream[Any], hold: Hold | None) -> None:
    """Call ``hold()`` as each subscription to ``stream`` starts, and what it returned
    as that subscription ends (disposed; at most once). The library's own sinks
    (:meth:`Stream.attach`) are not counted. A lazy connection counts its users so."""
    stream._hold = hold


class Publisher(Generic[T]):
    """The producer's handle on a :class:`Stream`: the only way to emit into it.

    The owner keeps the publisher and hands out :attr:`stream`.
    """

    __slots__ = ("emit", "emit_all", "stream")

    def __init__(self, name: str = "stream") -> None:
        self.stream: Stream[T] = Stream(name)
        #: Deliver a value to every subscriber (after the current round, if any).
        self.emit: Callable[[T], None] = self.stream._deliver
        #: Deliver each of a list of values in turn (see :meth:`Stream._deliver_all`).
        self.emit_all: Callable[[list[T], object], int] = self.stream._deliver_all

    def complete(self) -> None:
        """End the stream; later emissions go nowhere."""
        self.stream._complete()


class ValueStream(Stream[T], Generic[T]):
    """A stream that always holds a current value, like a ``BehaviorSubject``.

    Every new subscriber receives the current value first: synchronously inside
    ``subscribe`` when no scheduler is given, else on that scheduler. ``.value``
    reads it at any time. Read-only: its :class:`ValuePublisher` sets it.
    """

    def __init__(self, value: T, name: str = "stream") -> None:
        super().__init__(name)
        self._value = value

    @property
    def value(self) -> T:
        """The current value."""
        return self._value

    def _current(self) -> T:
        return self.value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name}: {self.value!r}>"

    def _repr_html_(self) -> str:
        value = self.value
        render = getattr(value, "_repr_html_", None)
        inner = render() if callable(render) else html.escape(repr(value))
        return f"<div><code>{html.escape(self._name)}</code>: {inner}</div>"

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self._completed:
            observer.on_completed()
            return Disposable()
        if scheduler is None:
            self._add(observer)
            try:
                observer.on_next(self._current())
            except BaseException:
                self._remove(observer)  # the subscription fails: it never was one
                raise
            return self._held(lambda: self._remove(observer))
        # On a scheduler, join and replay in the same scheduled action, so a value
        # emitted meanwhile is neither delivered before the replay nor twice.
        disposed = False

        def join(_scheduler: abc.SchedulerBase, _state: Any = None) -> None:
            if disposed or self._completed:
                return
            self._add(observer)
            observer.on_next(self._current())

        scheduler.schedule(join)

        def dispose() -> None:
            nonlocal disposed
            disposed = True
            self._remove(observer)

        return self._held(dispose)

    def _assign(self, value: T) -> None:
        # .value changes at once; the subscribers hear of it in emission order.
        self._value = value
        self._deliver(value)


class ValuePublisher(Generic[T]):
    """The producer's handle on a :class:`ValueStream`."""

    __slots__ = ("set", "stream")

    def __init__(self, value: T, name: str = "stream") -> None:
        self.stream: ValueStream[T] = ValueStream(value, name)
        #: Make ``value`` current and deliver it to every subscriber.
        self.set: Callable[[T], None] = self.stream._assign

    @property
    def value(self) -> T:
        return self.stream._value

    def complete(self) -> None:
        self.stream._complete()
