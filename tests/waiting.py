"""Waiting in tests, sized for a loaded CI machine.

CI runs the suite on a 2-core machine that may be busy with other work, in asyncio
debug mode. So a test never sleeps and hopes: it polls the condition it waits for
with :func:`wait_for`, and gives up only after :data:`EVENTUALLY` seconds. A correct
program on a slow machine then makes the test slower, never red; the deadline only
turns a broken program's hang into a failure that says what it waited for.

Intervals that the behaviour under test depends on (heartbeats, request and connect
timeouts, how long a connection counts as healthy) are chosen in each test with a
wide margin over the scheduling delays of a loaded machine (half a second and more),
or the time is injected. A test that checks that something does *not* happen
watches for a while; a slow machine can only make it watch longer.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["EVENTUALLY", "poll", "wait_for"]

T = TypeVar("T")

#: Seconds a test waits for something that must happen (an answer, a reconnect, a
#: socket closing) before it fails. Normally that takes milliseconds.
EVENTUALLY = 20.0


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = EVENTUALLY,
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """Poll ``predicate`` (sync or async) until it returns a truthy value, and return it.

    Only for a condition that stays true once it holds: a state the program passes
    through (a reconnect that takes 10 ms) can fall between two polls; wait for its
    lasting trace instead (a recorded list of states, a counter).

    Raises :class:`TimeoutError` if it is still falsy after ``timeout`` seconds.
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
    interval: float = 0.01,
    message: str | None = None,
) -> T:
    """:func:`wait_for` for code without an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {message or predicate!r}")
        time.sleep(interval)
    return result
