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

:class:`ScheduledView` delivers a value stream on another scheduler (a UI
thread) and conflates: whatever the subscribers' speed, at most one delivery is
pending per view, and it carries the latest value.
"""

from __future__ import annotations

import asyncio
import html
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable

__all__ = [
    "DerivedPublisher",
    "DerivedStream",
    "Publisher",
    "ScheduledView",
    "Stream",
    "ValuePublisher",
    "ValueStream",
    "deliver_on",
]

T = TypeVar("T")
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
        self._completed = False
        # Serialized emission: True while a round of deliveries runs; what is
        # emitted meanwhile waits in the backlog, in order.
        self._emitting = False
        self._backlog: deque[Any] = deque()

    @property
    def observer_count(self) -> int:
        """How many subscribers this stream has now."""
        return len(self._observers)

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        if self._completed:
            observer.on_completed()
            return Disposable()
        self._add(observer)
        return Disposable(lambda: self._remove(observer))

    def attach(self, sink: Callable[[T], None]) -> Callable[[], None]:
        """Call ``sink`` with every value, without reactivex's per-call observer
        wrapper: the cheapest subscription, for the library's own layers on the hot
        path (the store). It gets no completion. Returns a function that detaches it."""
        observer = cast(abc.ObserverBase[T], _Sink(sink))
        self._add(observer)
        return lambda: self._remove(observer)

    def _add(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = (*self._observers, observer)
        self._sinks = tuple(o.on_next for o in self._observers)

    def _remove(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)
        self._sinks = tuple(o.on_next for o in self._observers)

    # -- the producer's side (through a Publisher only) ------------------------------

    def _deliver(self, value: T) -> None:
        if self._emitting:  # re-entered from a subscriber: after this round
            self._backlog.append(value)
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
            self._backlog.append(_COMPLETE)
            return
        self._complete_now()

    def _complete_now(self) -> None:
        observers, self._observers, self._sinks = self._observers, (), ()
        self._backlog.clear()  # emitted after the end: nobody is left to tell
        for observer in observers:
            try:
                observer.on_completed()
            except Exception:
                log.exception("a subscriber of %s raised on completion", self._name)


class _Sink(Generic[T]):
    """An internal subscriber: ``on_next`` is the plain function itself."""

    __slots__ = ("on_next",)

    def __init__(self, on_next: Callable[[T], None]) -> None:
        self.on_next = on_next

    def on_error(self, error: Exception) -> None:
        log.error("internal subscriber got an error: %s", error)

    def on_completed(self) -> None:
        return None


class Publisher(Generic[T]):
    """The producer's handle on a :class:`Stream`: the only way to emit into it.

    The owner keeps the publisher and hands out :attr:`stream`.
    """

    __slots__ = ("emit", "stream")

    def __init__(self, name: str = "stream") -> None:
        self.stream: Stream[T] = Stream(name)
        #: Deliver a value to every subscriber (after the current round, if any).
        self.emit: Callable[[T], None] = self.stream._deliver

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
            observer.on_next(self._current())
            return Disposable(lambda: self._remove(observer))
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

        return Disposable(dispose)

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


class DerivedStream(ValueStream[T], Generic[T]):
    """A :class:`ValueStream` whose value is read from its owner on demand.

    ``.value`` is therefore always current, even between emissions, and the owner
    pays for an emission only when someone subscribes (``refresh``). Read-only:
    its :class:`DerivedPublisher` emits.
    """

    def __init__(self, getter: Callable[[], T], name: str = "stream") -> None:
        super().__init__(getter(), name)
        self._getter = getter

    @property
    def value(self) -> T:
        return self._getter()

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        self._value = self._getter()
        return super()._subscribe_core(observer, scheduler)

    def _refresh(self) -> None:
        if self._sinks:
            value = self._getter()
            if value != self._value:
                self._value = value
                self._deliver(value)

    def _publish(self) -> None:
        self._value = value = self._getter()
        self._deliver(value)


class DerivedPublisher(Generic[T]):
    """The producer's handle on a :class:`DerivedStream`."""

    __slots__ = ("publish", "refresh", "stream")

    def __init__(self, getter: Callable[[], T], name: str = "stream") -> None:
        self.stream: DerivedStream[T] = DerivedStream(getter, name)
        #: Emit the current value if anyone listens and it changed since the last.
        self.refresh: Callable[[], None] = self.stream._refresh
        #: Emit the current value.
        self.publish: Callable[[], None] = self.stream._publish

    def complete(self) -> None:
        self.stream._complete()


class ScheduledView(ValueStream[T], Generic[T]):
    """A value stream whose emissions are all delivered on ``scheduler``.

    For UI toolkits (``TkinterScheduler``, ``QtScheduler``...) that want callbacks on
    their own thread. It conflates: at most one delivery is pending on the
    scheduler per view, and it carries the latest value, so a slow subscriber skips
    intermediate values instead of queueing them (memory stays bounded). Each
    subscriber receives the current value first, then later values in order, and
    its last value is the source's ``.value``, which reads from any thread.
    """

    def __init__(
        self,
        source: ValueStream[T],
        scheduler: abc.SchedulerBase,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(source.value, f"{source._name} on {type(scheduler).__name__}")
        self._source = source
        self._scheduler = scheduler
        self._loop = loop
        # Shared between the loop's thread (values in) and the scheduler's (out).
        self._lock = threading.Lock()
        self._targets: tuple[abc.ObserverBase[T], ...] = ()
        # Subscribers waiting for their first value: (observer, value, its seq).
        self._joining: list[tuple[abc.ObserverBase[T], T, int]] = []
        self._latest: T | None = None
        self._latest_seq = 0  # 0: no value waiting
        self._seq = 0
        self._scheduled = False  # a delivery is pending or running on the scheduler
        self._ended = False
        self._feed: _Feed[T] | None = None

    @property
    def value(self) -> T:
        """The source's current value."""
        return self._source.value

    @property
    def scheduler(self) -> abc.SchedulerBase:
        return self._scheduler

    @property
    def observer_count(self) -> int:
        with self._lock:
            return len(self._targets) + len(self._joining)

    @property
    def pending(self) -> int:
        """Deliveries scheduled and not yet run: 0 or 1."""
        return int(self._scheduled)

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        cancelled = threading.Event()

        def join() -> None:
            if not cancelled.is_set():
                self._join(observer)

        def dispose() -> None:
            cancelled.set()
            with self._lock:
                self._targets = tuple(o for o in self._targets if o is not observer)
                self._joining = [j for j in self._joining if j[0] is not observer]

        loop = self._loop
        if loop is None or _running_loop() is loop:
            join()
        else:
            # Subscribed from another thread (a UI's): join on the loop's thread,
            # where emissions happen, so the first value is read in order with them.
            loop.call_soon_threadsafe(join)
        return Disposable(dispose)

    def _join(self, observer: abc.ObserverBase[T]) -> None:
        source = self._source
        if source._completed:
            with self._lock:
                self._ended = True
                self._joining.append((observer, source._value, 0))
                self._seq += 1
            self._wake()
            return
        if self._feed is None:
            self._feed = _Feed(self)
            source._add(cast(abc.ObserverBase[T], self._feed))
        value = source._current()
        with self._lock:
            self._seq += 1
            self._joining.append((observer, value, self._seq))
        self._wake()

    def _push(self, value: T) -> None:
        """A value from the source (the loop's thread): replaces any waiting one."""
        with self._lock:
            if not self._targets and not self._joining:
                idle = True
            else:
                idle = False
                self._seq += 1
                self._latest, self._latest_seq = value, self._seq
        if idle:  # nobody left: stop listening until someone subscribes again
            feed, self._feed = self._feed, None
            if feed is not None:
                self._source._remove(cast(abc.ObserverBase[T], feed))
            return
        self._wake()

    def _end(self) -> None:
        with self._lock:
            self._ended = True
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._scheduled:
                return
            self._scheduled = True
        self._scheduler.schedule(self._run)

    def _run(self, _scheduler: abc.SchedulerBase | None = None, _state: Any = None) -> None:
        """One delivery, on the scheduler: the latest value to everyone."""
        with self._lock:
            latest, latest_seq = self._latest, self._latest_seq
            self._latest, self._latest_seq = None, 0
            joining, self._joining = self._joining, []
            existing = self._targets
            self._targets = (*existing, *(observer for observer, _, _ in joining))
            ended = self._ended
        if latest_seq:
            for observer in existing:
                self._tell(observer, cast(T, latest))
        for observer, first, seq in joining:
            # Its first value, unless a newer one came since: then that one only.
            if latest_seq > seq:
                self._tell(observer, cast(T, latest))
            elif seq:
                self._tell(observer, first)
        if ended:
            with self._lock:
                targets, self._targets = self._targets, ()
            for observer in targets:
                try:
                    observer.on_completed()
                except Exception:
                    log.exception("a subscriber of %s raised on completion", self._name)
        with self._lock:
            # Values that came during this delivery: one more run, scheduled from
            # here, so runs never overlap (nor reorder) on a multi-threaded scheduler.
            again = bool(self._latest_seq or self._joining or (self._ended and self._targets))
            self._scheduled = again
        if again:
            self._scheduler.schedule(self._run)

    def _tell(self, observer: abc.ObserverBase[T], value: T) -> None:
        try:
            observer.on_next(value)
        except Exception:
            log.exception("a subscriber of %s raised; it was unsubscribed", self._name)
            with self._lock:
                self._targets = tuple(o for o in self._targets if o is not observer)


class _Feed(Generic[T]):
    """A view's subscription to its source."""

    __slots__ = ("on_completed", "on_next")

    def __init__(self, view: ScheduledView[T]) -> None:
        self.on_next = view._push
        self.on_completed = view._end

    def on_error(self, error: Exception) -> None:
        log.error("a scheduled view's source failed: %s", error)


def deliver_on(
    source: Observable[T], scheduler: abc.SchedulerBase, limit: int = 1_000, name: str = "stream"
) -> Observable[T]:
    """``source``'s values on ``scheduler``, in order, with at most ``limit`` waiting.

    For streams where every value matters (errors) and which therefore cannot
    conflate: ``observe_on`` would queue without bound behind a slow subscriber.
    Past ``limit``, the oldest waiting values are dropped and the count is logged.
    One delivery at a time is pending on the scheduler; it carries all that waits.
    """

    def subscribe(
        observer: abc.ObserverBase[T], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        lock = threading.Lock()
        waiting: deque[T] = deque()
        dropped = 0
        scheduled = False
        ended = False

        def run(_s: abc.SchedulerBase | None = None, _state: Any = None) -> None:
            nonlocal dropped, scheduled
            with lock:
                items = list(waiting)
                waiting.clear()
                lost, dropped = dropped, 0
                finished = ended
            if lost:
                log.warning(
                    "a subscriber of %s on %s fell behind: the %d oldest values waiting for "
                    "it were dropped (at most %d wait)",
                    name,
                    type(scheduler).__name__,
                    lost,
                    limit,
                )
            for item in items:
                observer.on_next(item)
            if finished:
                observer.on_completed()
                return
            with lock:
                scheduled = bool(waiting) or ended
                again = scheduled
            if again:
                scheduler.schedule(run)

        def wake() -> None:
            nonlocal scheduled
            with lock:
                if scheduled:
                    return
                scheduled = True
            scheduler.schedule(run)

        def on_next(value: T) -> None:
            nonlocal dropped
            with lock:
                if len(waiting) >= limit:
                    waiting.popleft()
                    dropped += 1
                waiting.append(value)
            wake()

        def on_completed() -> None:
            nonlocal ended
            with lock:
                ended = True
            wake()

        return source.subscribe(on_next, observer.on_error, on_completed)

    return Observable(subscribe)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
