"""What a round of emission calls: the stream's sinks.

A stream keeps, besides its observers, the tuple of plain callables a round of
emission calls (:func:`sinks`), and the lone internal sink it may call without a
round's bookkeeping (:func:`direct`, :class:`Sink`): the hot path of every message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, TypeVar

from reactivex import abc
from reactivex.observer import AutoDetachObserver

__all__ = ["Sink", "direct", "lone_batch", "sinks"]

T = TypeVar("T")
log = logging.getLogger("nexus_reactive.streams")


def sinks(observers: tuple[abc.ObserverBase[T], ...]) -> tuple[Callable[[T], None], ...]:
    """What a round of emission calls, one per observer.

    A lone subscriber made by ``subscribe(fn)`` (reactivex's AutoDetachObserver) is
    called as ``fn`` itself, without the wrapper's call: the wrapper only skips an
    observer that was stopped, and a stopped one is no longer here (disposing
    removes it; a failed subscribe removes it, see ``ValueStream._subscribe_core``;
    completion clears them all). With several observers, one may be disposed by
    another during a round: then every one goes through its own ``on_next``.
    """
    if len(observers) == 1:
        observer = observers[0]
        direct = getattr(observer, "_on_next", None)
        if type(observer) is AutoDetachObserver and callable(direct):
            return (direct,)
    return tuple(o.on_next for o in observers)


def direct(observers: tuple[abc.ObserverBase[T], ...]) -> Callable[[T], None] | None:
    """The lone internal sink's call, if the only observer is one (``Stream.attach``)."""
    if len(observers) == 1 and isinstance(observers[0], Sink):
        return observers[0].on_next
    return None


def lone_batch(observers: tuple[abc.ObserverBase[T], ...]) -> Callable[[list[T]], None] | None:
    """The lone internal sink's batch call, if the only observer is one that has one."""
    if len(observers) == 1 and isinstance(observers[0], Sink):
        return observers[0].batch
    return None


class Sink(Generic[T]):
    """An internal subscriber: ``on_next`` is the plain function itself; ``batch``, if
    given, takes a list of values in one call (what ``on_next`` would do for each)."""

    __slots__ = ("_done", "batch", "on_next")

    def __init__(
        self,
        on_next: Callable[[T], None],
        on_completed: Callable[[], None] | None = None,
        batch: Callable[[list[T]], None] | None = None,
    ) -> None:
        self.on_next = on_next
        self._done = on_completed
        self.batch = batch

    def on_error(self, error: Exception) -> None:
        log.error("internal subscriber got an error: %s", error)

    def on_completed(self) -> None:
        if self._done is not None:
            self._done()
