"""Waiting in tests with a deadline, sized for a loaded CI machine.

A test never sleeps and hopes: it waits for the condition it needs, and gives up only
after :data:`EVENTUALLY` seconds. A correct program on a slow machine (two busy cores,
asyncio debug mode) then makes the test slower, never red; the deadline only turns a
broken program's hang into a failure that says what it waited for.

- :func:`wait_for_state` waits for a connection state (``"connected"``, a
  :class:`~nexus_reactive.Phase`, or a predicate) by subscribing to the state stream,
  so it sees every state published, even one that lasts a millisecond.
- :func:`wait_until` polls any condition (sync or async) until it holds.
- :func:`poll` is :func:`wait_until` for code without an event loop (threads).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from ..core import ConnectionState, Phase
from ..streams import ValueStream

__all__ = ["EVENTUALLY", "HasState", "StateWanted", "poll", "wait_for_state", "wait_until"]

T = TypeVar("T")

#: Seconds to wait for something that must happen (an answer, a reconnect, a socket
#: closing) before failing. Normally that takes milliseconds.
EVENTUALLY = 20.0


class HasState(Protocol):
    """Anything with a ``state`` stream: a ``WebSocketService`` or a ``WebSocketStore``."""

    @property
    def state(self) -> ValueStream[ConnectionState]: ...


#: What :func:`wait_for_state` waits for: a phase, its name, or a test of the state.
StateWanted = Phase | str | Callable[[ConnectionState], bool]


async def wait_until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = EVENTUALLY,
    *,
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value, and return it.

    Only for a condition that stays true once it holds: a state the program passes
    through (a reconnect that takes 10 ms) can fall between two polls; wait for its
    lasting trace instead (a counter, a recorded list), or use :func:`wait_for_state`.

    Args:
        predicate: called every ``interval`` seconds; may return an awaitable.
        timeout: seconds before giving up.
        interval: seconds between two calls.
        message: what is waited for, for the error (default: the predicate's repr).

    Returns:
        The predicate's first truthy result.

    Raises:
        TimeoutError: still falsy after ``timeout`` seconds.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {message or predicate!r}")
        await asyncio.sleep(interval)


def poll(
    predicate: Callable[[], T],
    timeout: float = EVENTUALLY,
    *,
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """:func:`wait_until` for code without an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {message or predicate!r}")
        time.sleep(interval)
    return result


def _matcher(wanted: StateWanted) -> tuple[Callable[[ConnectionState], bool], str]:
    if isinstance(wanted, Phase):
        return (lambda state: state.phase is wanted), wanted.value
    if isinstance(wanted, str):
        phase = Phase(wanted.lower())  # ValueError names a phase that does not exist
        return (lambda state: state.phase is phase), phase.value
    return wanted, getattr(wanted, "__name__", repr(wanted))


async def wait_for_state(
    source: HasState | ValueStream[ConnectionState],
    wanted: StateWanted,
    *,
    timeout: float = EVENTUALLY,
) -> ConnectionState:
    """Wait until ``source`` publishes a state that is ``wanted``, and return that state.

    It subscribes to the state stream, so the current state counts, and so does every
    state published while it waits, however briefly it lasts. States published from
    another thread (a ``SyncWebSocketStore``) are handed to this event loop.

    Args:
        source: a ``WebSocketService``, a ``WebSocketStore`` or their ``state`` stream.
        wanted: a :class:`~nexus_reactive.Phase`, its value (``"connected"``,
            ``"waiting"``, ``"failed"``, ...), or a predicate on the
            :class:`~nexus_reactive.ConnectionState`.
        timeout: seconds before giving up.

    Returns:
        The first matching state.

    Raises:
        TimeoutError: no matching state within ``timeout``; the message lists the
            states seen meanwhile.
        ValueError: ``wanted`` is a string that names no phase.
    """
    matches, label = _matcher(wanted)
    stream = source if isinstance(source, ValueStream) else source.state
    loop = asyncio.get_running_loop()
    found: asyncio.Future[ConnectionState] = loop.create_future()
    seen: list[str] = []

    def check(state: ConnectionState) -> None:
        seen.append(state.phase.value)
        if not found.done() and matches(state):
            found.set_result(state)

    def on_state(state: ConnectionState) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            check(state)
        elif not loop.is_closed():
            loop.call_soon_threadsafe(check, state)

    subscription = stream.subscribe(on_state)
    try:
        async with asyncio.timeout(timeout):
            return await found
    except TimeoutError:
        last = stream.value
        # A lazy client waits for demand, and watching state is none: say so, or the
        # wait looks like a connection that never came.
        hint = f" ({last.reason}; watching state opens nothing)" if last.idle else ""
        raise TimeoutError(
            f"no {label!r} state within {timeout}s; states seen: {' -> '.join(seen) or 'none'}"
            + hint
        ) from None
    finally:
        subscription.dispose()
