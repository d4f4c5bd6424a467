"""Asks as Observables: the shared machinery behind ``ask_rx`` and ``ask_stream``;
and the typed views of the ``messages`` stream (``stream``, ``responses``).

Each subscription starts one ask as a task on the service's event loop (from any
thread), completes or errors with it, and abandons it when disposed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeGuard, TypeVar, cast, overload

import reactivex
from reactivex import Observable, abc
from reactivex import operators as ops
from reactivex.disposable import Disposable, SerialDisposable

from .messages import AskResponse, Message

__all__ = ["observe_answer", "observe_ask", "observe_pieces", "of_type", "on_loop"]

log = logging.getLogger("nexus_reactive.service")
M = TypeVar("M", bound=Message)

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


Loop = Callable[[], asyncio.AbstractEventLoop | None]


def observe_answer(
    loop: Loop, ask: Callable[[], Coroutine[Any, Any, AskResponse]]
) -> Observable[AskResponse]:
    """``ask_rx``: each subscription asks once, emits the answer and completes."""

    def starter(observer: abc.ObserverBase[AskResponse]) -> Any:
        def finish(answer: AskResponse) -> None:
            observer.on_next(answer)
            observer.on_completed()

        return ask(), finish

    return observe_ask(loop, starter)


def observe_pieces(
    loop: Loop,
    ask: Callable[[Callable[[str], None]], Coroutine[Any, Any, AskResponse]],
    query: str,
) -> Observable[str]:
    """``ask_stream``: each subscription asks once and emits the answer's pieces, then
    whatever the final answer adds to them, and completes."""

    def starter(observer: abc.ObserverBase[str]) -> Any:
        pieces: list[str] = []

        def on_piece(delta: str) -> None:
            pieces.append(delta)
            observer.on_next(delta)

        def finish(answer: AskResponse) -> None:
            sent = "".join(pieces)
            if answer.answer.startswith(sent):
                if len(answer.answer) > len(sent):
                    observer.on_next(answer.answer[len(sent) :])
            else:
                log.warning("streamed pieces of %r differ from its final answer", query)
            observer.on_completed()

        return ask(on_piece), finish

    return observe_ask(loop, starter)


@overload
def of_type(stream: Observable[Message], type: str) -> Observable[Message]: ...
@overload
def of_type(stream: Observable[Message], type: type[M]) -> Observable[M]: ...
def of_type(
    stream: Observable[Message], type: str | type[M]
) -> Observable[Message] | Observable[M]:
    """The messages of one type: by name (``"error"``) or by class."""
    if isinstance(type, str):
        wanted = type

        def named(message: Message) -> bool:
            return message.type == wanted

        return stream.pipe(ops.filter(named))
    cls = type

    def of_class(message: Message) -> TypeGuard[M]:
        return isinstance(message, cls)

    return stream.pipe(ops.filter(of_class), ops.map(lambda m: cast(M, m)))
