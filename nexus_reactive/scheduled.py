"""Delivering streams on another scheduler: a UI toolkit's thread.

:class:`ScheduledView` delivers a value stream there and conflates: whatever the
subscribers' speed, at most one delivery is pending per view, and it carries the
latest value. :func:`deliver_on` is for streams that cannot conflate (errors):
in order, with a bounded number of values waiting.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.internal import DisposedException

from .streams import ValueStream

__all__ = ["ScheduledView", "deliver_on"]

T = TypeVar("T")
log = logging.getLogger("nexus_reactive.streams")


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
        super().__init__(source.value, f"{source.name} on {type(scheduler).__name__}")
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
        self._detach: Callable[[], None] | None = None  # from the source

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
        return self._held(dispose)

    def _join(self, observer: abc.ObserverBase[T]) -> None:
        source = self._source
        if source.completed:
            with self._lock:
                self._ended = True
                self._joining.append((observer, source.value, 0))
                self._seq += 1
            self._wake()
            return
        if self._detach is None:
            self._detach = source.attach(self._push, self._end)
        value = source.value
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
            detach, self._detach = self._detach, None
            if detach is not None:
                detach()
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
        self._schedule()

    def _schedule(self) -> None:
        _schedule(self._scheduler, self._run, self._name, self._dropped, self._wanted)

    def _dropped(self) -> None:
        with self._lock:  # the delivery was given up: nothing pending any more
            self._scheduled = False

    def _wanted(self) -> bool:
        with self._lock:
            return bool(self._targets or self._joining)

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
            self._schedule()

    def _tell(self, observer: abc.ObserverBase[T], value: T) -> None:
        try:
            observer.on_next(value)
        except Exception:
            log.exception("a subscriber of %s raised; it was unsubscribed", self._name)
            with self._lock:
                self._targets = tuple(o for o in self._targets if o is not observer)


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
        disposed = False

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
                reschedule()

        def given_up() -> None:
            nonlocal scheduled
            with lock:
                scheduled = False

        def reschedule() -> None:
            _schedule(scheduler, run, name, given_up, lambda: not disposed)

        def wake() -> None:
            nonlocal scheduled
            with lock:
                if scheduled:
                    return
                scheduled = True
            reschedule()

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

        subscription = source.subscribe(on_next, observer.on_error, on_completed)

        def dispose() -> None:
            nonlocal disposed
            disposed = True  # a delivery retried on a scheduler not ready: not any more
            subscription.dispose()

        return Disposable(dispose)

    return Observable(subscribe)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


#: How long a delivery is retried on a scheduler that cannot take it yet (seconds).
NOT_READY_PATIENCE = 60.0
_FIRST_RETRY, _LAST_RETRY = 0.01, 0.25


def _schedule(
    scheduler: abc.SchedulerBase,
    action: Callable[..., Any],
    name: str,
    dropped: Callable[[], None],
    wanted: Callable[[], bool] = lambda: True,
) -> None:
    """Schedule ``action``, or call ``dropped`` if the delivery is given up.

    A disposed scheduler (its owner closed, racing a delivery) ends the delivery:
    the stream has ended for it. A scheduler that is not ready (Tk before its main
    loop runs, or after it ended, raises ``RuntimeError("main thread is not in main
    loop")``) is tried again later from this thread's event loop, while the delivery
    is ``wanted`` and for at most :data:`NOT_READY_PATIENCE` seconds: values meanwhile
    conflate into it, and a subscriber is never dropped for the toolkit's state.
    """
    deadline: float | None = None
    delay = _FIRST_RETRY

    def attempt() -> None:
        nonlocal deadline, delay
        if deadline is not None and not wanted():
            dropped()
            return
        try:
            scheduler.schedule(action)
        except DisposedException:
            log.debug("the scheduler of %s was disposed: delivery dropped", name)
            dropped()
        except RuntimeError as exc:
            loop = _running_loop()
            now = loop.time() if loop is not None else 0.0
            if deadline is None:
                deadline = now + NOT_READY_PATIENCE
            if loop is None or now >= deadline:
                log.warning(
                    "%s could not be delivered on %s (%s): this value is dropped; later "
                    "ones are tried again",
                    name,
                    type(scheduler).__name__,
                    exc,
                )
                dropped()
                return
            log.debug("%s on %s is not ready (%s): trying again", name, scheduler, exc)
            loop.call_later(delay, attempt)
            delay = min(delay * 2, _LAST_RETRY)

    attempt()
