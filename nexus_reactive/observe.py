"""Asks as Observables: the shared machinery behind ``ask_rx`` and ``ask_stream``.

Each subscription starts one ask as a task on the service's event loop (from any
thread), completes or errors with it, and abandons it when disposed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable, SerialDisposable

from .messages import AskResponse

__all__ = ["observe_ask", "on_loop"]

T = TypeVar("T")

#: Given the subscriber: the ask to run, and what to emit when it answers.
AskStarter = Callable[
    [abc.ObserverBase[T]],
    tuple[Coroutine[Any, Any, AskResponse], Callable[[AskResponse], None]],
]


def observe_ask(
    loop_of: Callable[[], asyncio.AbstractEventLoop | None], starter: AskStarter[T]
) -> Observable[T]:
    """A cold Observable that runs one ask per subscription.

    Args:
        loop_of: the service's loop (``None`` until it first connects).
        starter: makes the ask's coroutine for a subscriber, and the function that
            emits the answer to it (``on_next``... then ``on_completed``).
    """

    def subscribe(
        observer: abc.ObserverBase[T], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        return on_loop(loop_of(), lambda: start(observer))

    def start(observer: abc.ObserverBase[T]) -> abc.DisposableBase:
        coro, finish = starter(observer)
        task = asyncio.get_running_loop().create_task(coro, name="nexus-reactive-ask")

        def done(finished: asyncio.Task[AskResponse]) -> None:
            if finished.cancelled():
                return
            error = finished.exception()
            if isinstance(error, Exception):
                observer.on_error(error)
            else:
                finish(finished.result())

        task.add_done_callback(done)

        def cancel() -> None:
            task.cancel()

        return Disposable(cancel)

    return reactivex.create(subscribe)


def on_loop(
    loop: asyncio.AbstractEventLoop | None, start: Callable[[], abc.DisposableBase]
) -> abc.DisposableBase:
    """Run ``start`` on ``loop``: now if it is the running one, else soon, via
    ``call_soon_threadsafe`` (a subscription made from a UI thread)."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if loop is None or running is loop:
        return start()
    holder = SerialDisposable()

    def begin() -> None:
        if not holder.is_disposed:
            holder.disposable = start()

    loop.call_soon_threadsafe(begin)
    return holder
