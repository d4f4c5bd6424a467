"""The library's own paths, driven the way an application drives them.

- :func:`flood_service`: ``WebSocketService`` with one ``messages`` subscriber;
- :func:`flood_store`: ``use_websocket`` with one ``messages`` subscriber that
  waits until ``len(history)`` covers the whole flood;
- :func:`library_asker`: ``WebSocketService.ask``;
- :func:`idle_store`: a connected store whose history the in-process sections
  (append cost, memory) fill themselves.

Configurations use the library's defaults (heartbeat included) except where a
measurement needs otherwise, which is said where it is done.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from nexus_reactive import WebSocketConfig, WebSocketService, use_websocket
from nexus_reactive.messages import Message
from nexus_reactive.store import WebSocketStore

from . import traffic
from .baselines import AskFn

__all__ = [
    "flood_service",
    "flood_service_picows",
    "flood_store",
    "idle_store",
    "library_asker",
    "wait_until",
]

_DONE = traffic.SENTINEL_ID
#: Bound on one flood or one wait: a hung variant fails the run instead of hanging it.
TIMEOUT = 300.0


async def flood_service(url: str, n: int, api_key: str, transport: str = "aiohttp") -> float:
    """Receive a flood through ``service.messages`` (one counting subscriber).

    ``transport="picows"``: through the bench's prototype picows transport
    (:mod:`bench.picows_transport`), by the service's ``transport_factory`` seam.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_next(message: Message) -> None:
        nonlocal count
        count += 1
        if message.id == _DONE and not done.done():
            done.set_result(None)

    t0 = time.perf_counter()
    service = _service(WebSocketConfig(url=url, api_key=api_key), transport)
    service.messages.subscribe(on_next)
    try:
        await service.connect()
        await asyncio.wait_for(done, TIMEOUT)
        elapsed = time.perf_counter() - t0
    finally:
        await service.close()
    if count != n + 1:
        raise RuntimeError(f"service.messages: received {count} messages, expected {n + 1}")
    return elapsed


async def flood_store(url: str, n: int, api_key: str) -> float:
    """Receive a flood through a ``use_websocket`` store with one subscriber.

    The history holds the whole flood (``max_messages=n+1``), so its length counts it.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_history(history: Sequence[Any]) -> None:
        if len(history) > n and not done.done():
            done.set_result(None)

    t0 = time.perf_counter()
    store = use_websocket(url=url, api_key=api_key, max_messages=n + 1)
    store.messages.subscribe(on_history)
    try:
        await asyncio.wait_for(done, TIMEOUT)
        elapsed = time.perf_counter() - t0
        last = store.messages.value[-1]
    finally:
        await store.close()
    if last.id != _DONE:
        raise RuntimeError(f"store: the last message is {last.id!r}, expected the sentinel")
    return elapsed


async def flood_service_picows(url: str, n: int, api_key: str) -> float:
    """:func:`flood_service` through the prototype picows transport."""
    return await flood_service(url, n, api_key, transport="picows")


def _service(config: WebSocketConfig, transport: str) -> WebSocketService:
    if transport == "aiohttp":
        return WebSocketService(config)
    from .picows_transport import picows_factory

    return WebSocketService(config, transport_factory=picows_factory(config))


@asynccontextmanager
async def library_asker(url: str, api_key: str, transport: str = "aiohttp") -> AsyncIterator[AskFn]:
    """A connected service; yields ``ask()``, one ``service.ask`` of the bench query.

    ``ask`` is ``service.ask`` with the query bound, not a coroutine around it: one
    coroutine per ask, as the naive client's (and as an application awaits it).
    """
    async with _service(WebSocketConfig(url=url, api_key=api_key), transport) as service:
        yield functools.partial(service.ask, traffic.QUERY)


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll ``predicate()`` until it is true.

    Raises:
        TimeoutError: it stayed false for ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def idle_store(
    flood_url: str, api_key: str, max_messages: int
) -> AsyncIterator[WebSocketStore]:
    """A store connected to the flood server with nothing left to receive.

    The flood server sends it only the sentinel; the history is then cleared, so
    the caller starts from an empty history on a live, quiet connection.
    """
    store = use_websocket(url=f"{flood_url}?n=0", api_key=api_key, max_messages=max_messages)
    try:
        await wait_until(lambda: len(store.messages.value) == 1)
        store.clear_messages()
        yield store
    finally:
        await store.close()
