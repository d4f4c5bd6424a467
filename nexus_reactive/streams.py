"""The library's observables: hot streams and streams that hold a current value.

These are small :class:`reactivex.Observable` subclasses rather than Subjects: the
library is the only producer, always on the event loop's thread, so a Subject's
lock and checks would be paid on every message for nothing. Emitting is one loop
over a tuple of bound ``on_next`` methods.

A subscriber that raises is logged and unsubscribed; it never breaks the receive
loop or starves the other subscribers.
"""

from __future__ import annotations

import asyncio
import html
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

__all__ = ["DerivedStream", "ScheduledView", "Stream", "ValueStream"]

T = TypeVar("T")
log = logging.getLogger("nexus_reactive.streams")


class Stream(Observable[T], Generic[T]):
    """A hot stream: subscribers receive what is emitted after they subscribe."""

    def __init__(self, name: str = "stream") -> None:
        super().__init__()
        self._name = name
        self._observers: tuple[abc.ObserverBase[T], ...] = ()
        self._sinks: tuple[Callable[[T], None], ...] = ()
        self._completed = False

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

    def _attach(self, sink: Callable[[T], None]) -> Callable[[], None]:
        """Feed ``sink`` directly, without reactivex's per-call observer wrapper: for
        the library's own layers (the store) on the hot path. Returns a detacher."""
        observer = cast(abc.ObserverBase[T], _Sink(sink))
        self._add(observer)
        return lambda: self._remove(observer)

    def _add(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = (*self._observers, observer)
        self._sinks = tuple(o.on_next for o in self._observers)

    def _remove(self, observer: abc.ObserverBase[T]) -> None:
        self._observers = tuple(o for o in self._observers if o is not observer)
        self._sinks = tuple(o.on_next for o in self._observers)

    def _emit(self, value: T) -> None:
        observers, sinks = self._observers, self._sinks  # a consistent snapshot
        for sink in sinks:
            try:
                sink(value)
            except Exception:
                log.exception("a subscriber of %s raised; it was unsubscribed", self._name)
                # By position in the snapshot: other observers may have left (and the
                # tuples been rebuilt) during this very emission.
                self._remove(observers[sinks.index(sink)])

    def _complete(self) -> None:
        """End the stream: every subscriber gets ``on_completed`` and is released."""
        if self._completed:
            return
        self._completed = True
        observers, self._observers, self._sinks = self._observers, (), ()
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


class ValueStream(Stream[T], Generic[T]):
    """A stream that always holds a current value, like a ``BehaviorSubject``.

    Every new subscriber receives the current value first: synchronously inside
    ``subscribe`` when no scheduler is given, else on that scheduler. ``.value``
    reads it at any time.
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

    def _set(self, value: T) -> None:
        self._value = value
        self._emit(value)


class DerivedStream(ValueStream[T], Generic[T]):
    """A :class:`ValueStream` whose value is read from its owner on demand.

    ``.value`` is therefore always current, even between emissions, and the owner
    pays for an emission only when someone subscribes (:meth:`_refresh`).
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
        """Emit the current value if anyone listens and it changed since the last one."""
        if self._sinks:
            value = self._getter()
            if value != self._value:
                self._value = value
                self._emit(value)


class ScheduledView(ValueStream[T], Generic[T]):
    """A value stream whose emissions are all delivered on ``scheduler``.

    For UI toolkits (``TkinterScheduler``, ``QtScheduler``...) that want callbacks on
    their own thread. Order is kept (``observe_on`` queues), and ``.value`` reads the
    source's current value from any thread.
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
        self._observed = source.pipe(_observe_on(scheduler))

    @property
    def value(self) -> T:
        """The source's current value."""
        return self._source.value

    @property
    def scheduler(self) -> abc.SchedulerBase:
        return self._scheduler

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        loop = self._loop
        if loop is None or _running_loop() is loop:
            return self._observed.subscribe(observer, scheduler=scheduler)
        # Subscribed from another thread (a UI's): join and replay on the loop's
        # thread, where emissions happen, so a replay can never overtake, or be
        # overtaken by, a concurrent emission.
        holder = SerialDisposable()

        def join() -> None:
            if not holder.is_disposed:
                holder.disposable = self._observed.subscribe(observer, scheduler=scheduler)

        loop.call_soon_threadsafe(join)
        return holder


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _observe_on(scheduler: abc.SchedulerBase) -> Callable[[Observable[T]], Observable[T]]:
    from reactivex import operators

    return operators.observe_on(scheduler)
