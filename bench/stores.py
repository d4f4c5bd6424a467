"""Section h ``stores``: many stores on one shared connection: create, memory per idle
store, answers routed to their stores, a flood of answers no store asked for, a
broadcast delivered to every store, close.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nexus_reactive import History, HistoryItem, ResponseMessage, WebSocketConfig, use_websocket
from nexus_reactive.messages import Message

from . import library, servers, traffic
from .rounds import rounds
from .stats import ratio

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["stores"]


async def _settle(stores: list[Any]) -> None:
    await library.wait_until(
        lambda: (
            stores[0].service.state.value.connected
            and all(s._connecting is None or s._connecting.done() for s in stores)
        ),
        timeout=120,
    )


async def _stores_run(suite: Suite, url: str) -> dict[str, float]:
    """Create S shared stores, route S x K answers to them, close them all."""
    p = suite.params
    config = WebSocketConfig(url=url, api_key=suite.api_key)
    t0 = time.perf_counter()
    stores = [use_websocket(config, share=True) for _ in range(p.stores)]
    made = time.perf_counter() - t0
    try:
        await _settle(stores)
        created = time.perf_counter() - t0
        if stores[0].service is not stores[-1].service:
            raise RuntimeError("stores: share=True did not share the connection")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        waiting = len(stores)
        want = p.stores_asks

        def counter() -> Callable[[History[HistoryItem]], None]:
            finished = False

            def on_history(history: History[HistoryItem]) -> None:
                nonlocal waiting, finished
                if finished:
                    return
                if sum(type(m) is ResponseMessage for m in history) >= want:
                    finished = True
                    waiting -= 1
                    if waiting == 0 and not done.done():
                        done.set_result(None)

            return on_history

        for store in stores:
            store.messages.subscribe(counter())
        t1 = time.perf_counter()
        for _ in range(want):
            for store in stores:
                store.send_message(traffic.QUERY)
        await asyncio.wait_for(done, 300)
        routed = time.perf_counter() - t1
    finally:
        t2 = time.perf_counter()
        await asyncio.gather(*(s.close() for s in stores))
        closed = time.perf_counter() - t2
    return {
        "create, ms": made * 1e3,
        "create + connect, ms": created * 1e3,
        "answers routed, answers/s": p.stores * want / routed,
        "close all, ms": closed * 1e3,
    }


async def _store_memory(suite: Suite, url: str) -> float:
    """Bytes per idle shared store (tracemalloc), the connection already open."""
    p = suite.params
    config = WebSocketConfig(url=url, api_key=suite.api_key)
    anchor = use_websocket(config, share=True)
    stores: list[Any] = []
    try:
        await _settle([anchor])
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            stores = [use_websocket(config, share=True) for _ in range(p.stores)]
            await _settle(stores)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    finally:
        await asyncio.gather(*(s.close() for s in stores))
        await anchor.close()
    return (after - before) / p.stores


async def _shared_flood(suite: Suite, count: int, kind: str = "response") -> float:
    """msg/s of a flood on a connection shared by ``count`` stores: of answers no store
    asked for (``response``: no store takes one), or of broadcasts (``notice``: every
    store takes each one)."""
    n = suite.params.stores_flood if kind == "response" else suite.params.stores_broadcast
    url = f"{suite.flood_url()}?n={n}&kind={kind}"
    config = WebSocketConfig(url=url, api_key=suite.api_key)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    # Created with no await between: every store is attached before the first frame.
    stores = [use_websocket(config, share=True) for _ in range(count)]
    t0 = time.perf_counter()  # from the connection's start: creating them is timed apart
    seen = 0

    def on_next(message: Message) -> None:
        nonlocal seen
        seen += 1
        if message.id == traffic.SENTINEL_ID and not done.done():
            done.set_result(None)

    stores[0].service.messages.subscribe(on_next)
    try:
        await asyncio.wait_for(done, 300)
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    if seen != n + 1:
        raise RuntimeError(f"shared flood: saw {seen} messages, expected {n + 1}")
    return n / elapsed


async def stores(suite: Suite) -> dict[str, Any]:
    p = suite.params
    lean = servers.start_lean(suite.api_key)
    try:
        url = lean.url
        s = p.stores

        async def lifecycle() -> dict[str, float]:
            return await _stores_run(suite, url)

        async def memory() -> dict[str, float]:
            return {"bytes per idle store": await _store_memory(suite, url)}

        async def flood_many() -> dict[str, float]:
            return {"msg/s": await _shared_flood(suite, s)}

        async def flood_one() -> dict[str, float]:
            return {"msg/s": await _shared_flood(suite, 1)}

        async def broadcast() -> dict[str, float]:
            rate = await _shared_flood(suite, s, "notice")
            return {"msg/s": rate, "deliveries/s": rate * s}

        runs = [
            (f"{s:,} shared stores", lifecycle),
            (f"{s:,} idle shared stores, tracemalloc", memory),
            (f"flood on a connection shared by {s:,} stores", flood_many),
            ("flood on a connection with 1 shared store", flood_one),
            (f"broadcast to {s:,} shared stores", broadcast),
        ]
        await flood_one()  # warm-up
        variants = await rounds("h", p.rounds, runs)
    finally:
        lean.stop()

    def med(name: str, metric: str) -> float:
        return float(variants[name][metric]["median"])

    return {
        "unit": "see each metric",
        "stores": s,
        "asks_per_store": p.stores_asks,
        "flood": p.stores_flood,
        "driven": "use_websocket(share=True) stores on one connection to the lean ask "
        "server (answers) or the flood server (answers no store asked for; unsolicited "
        "notices, each delivered to every store)",
        "variants": variants,
        "ratios": {
            "unasked answers, msg/s: many shared stores / 1": ratio(
                med(f"flood on a connection shared by {s:,} stores", "msg/s"),
                med("flood on a connection with 1 shared store", "msg/s"),
            ),
        },
    }
