"""Value streams read from their owner on demand: ``outbox_depth``, a store's
``messages``, ``metrics``. Split out of :mod:`nexus_reactive.streams`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from reactivex import abc

from .streams import ValueStream

__all__ = ["DerivedPublisher", "DerivedStream"]

T = TypeVar("T")


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
