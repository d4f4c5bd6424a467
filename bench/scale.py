"""The sections of issue 14 beyond the per-message paths.

f ``uvloop``   the service's flood and sequential asks on asyncio's loop and on uvloop's,
               interleaved, each run in a fresh loop in a worker thread (so both loops
               run the same code against the same server processes); the TCP echo
               floor beside them.
g ``imports``  ``import nexus_reactive`` in fresh interpreters: median of N.
h ``stores``   many stores on one shared connection: create, memory per idle store,
               answers routed to their stores, a flood of answers no store asked
               for, a broadcast delivered to every store, close.
i ``server``   the reference server: idle connections with heartbeats held by one
               process (clients: the library's own, in a child process), and the asks/s
               it answers with the echo engine, 100 in flight.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from nexus_reactive import ResponseMessage, WebSocketConfig, use_websocket
from nexus_reactive.messages import Message

from . import baselines, library, servers, traffic
from .stats import ratio, summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["imports", "server", "stores", "uvloop_section"]

Run = Callable[[], Awaitable[dict[str, float]]]


def _log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _rotated(items: Sequence[Any], by: int) -> list[Any]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def _summaries(samples: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    return {
        name: {metric: summarize(values) for metric, values in metrics.items()}
        for name, metrics in samples.items()
    }


async def _rounds(section: str, rounds: int, runs: list[tuple[str, Run]]) -> dict[str, Any]:
    samples: dict[str, dict[str, list[float]]] = {name: {} for name, _ in runs}
    for r in range(rounds):
        for name, run in _rotated(runs, r):
            gc.collect()
            result = await run()
            for metric, value in result.items():
                samples[name].setdefault(metric, []).append(value)
            shown = ", ".join(f"{k} {v:,.1f}" for k, v in result.items())
            _log(f"{section} round {r + 1}/{rounds}: {name}: {shown}")
    return _summaries(samples)


# -- f: uvloop ---------------------------------------------------------------------------


def _run_in_loop(kind: str, make: Callable[[], Awaitable[Any]]) -> Any:
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(make())  # type: ignore[arg-type]


def _on(kind: str, run: Run) -> Run:
    """``run`` in a fresh loop of ``kind`` in a worker thread."""

    async def threaded() -> dict[str, float]:
        result: dict[str, float] = await asyncio.to_thread(_run_in_loop, kind, run)
        return result

    return threaded


async def uvloop_section(suite: Suite) -> dict[str, Any]:
    p = suite.params
    lean = servers.start_lean(suite.api_key)
    echo = servers.start_echo()
    try:
        base, key, n = suite.flood_url(), suite.api_key, p.messages

        def flood(kind: str) -> Run:
            async def run() -> dict[str, float]:
                elapsed = await library.flood_service(f"{base}?n={n}", n, key)
                return {"msg/s": n / elapsed}

            return _on(kind, run)

        def asks(kind: str) -> Run:
            return _on(
                kind, suite._sequential_run(lambda: library.library_asker(lean.url, key), lean)
            )

        floor = _on("asyncio", suite._sequential_run(lambda: baselines.echo_line(echo.url), echo))
        runs = [
            ("service.messages (asyncio)", flood("asyncio")),
            ("service.messages under uvloop", flood("uvloop")),
            ("sequential ask (asyncio)", asks("asyncio")),
            ("sequential ask under uvloop", asks("uvloop")),
            ("raw TCP echo sequential (asyncio)", floor),
        ]
        # Warm-up, unrecorded.
        warm = min(n, 2_000)
        for kind in ("asyncio", "uvloop"):

            async def warm_flood() -> dict[str, float]:
                await library.flood_service(f"{base}?n={warm}", warm, key)
                return {}

            await _on(kind, warm_flood)()
        variants = await _rounds("f", p.rounds, runs)
    finally:
        echo.stop()
        lean.stop()

    def med(name: str, metric: str) -> float:
        return float(variants[name][metric]["median"])

    return {
        "unit": "msg/s; latency in microseconds",
        "driven": "each run in a fresh event loop in a worker thread; the same flood "
        "server and lean ask server as sections a and b",
        "variants": variants,
        "ratios": {
            "service.messages: uvloop / asyncio": ratio(
                med("service.messages under uvloop", "msg/s"),
                med("service.messages (asyncio)", "msg/s"),
            ),
            "sequential p50: uvloop / asyncio": ratio(
                med("sequential ask under uvloop", "p50 us"),
                med("sequential ask (asyncio)", "p50 us"),
            ),
            "sequential p50 under uvloop / echo floor": ratio(
                med("sequential ask under uvloop", "p50 us"),
                med("raw TCP echo sequential (asyncio)", "p50 us"),
            ),
        },
    }


# -- g: import time ------------------------------------------------------------------------

IMPORTS = {
    "import nexus_reactive": "import nexus_reactive",
    "from nexus_reactive import use_websocket, WebSocketService": (
        "from nexus_reactive import use_websocket, WebSocketService"
    ),
    "+ the first connection's modules (aiohttp transport)": (
        "import nexus_reactive, nexus_reactive.aiohttp_transport"
    ),
    "import aiohttp (reference)": "import aiohttp",
}


async def _import_ms(statement: str) -> float:
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        raise RuntimeError(f"{statement!r} failed:\n{err.decode(errors='replace')[-2000:]}")
    return float(out) * 1e3


async def imports(suite: Suite) -> dict[str, Any]:
    p = suite.params
    samples: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for r in range(p.import_runs):
        for name in _rotated(list(IMPORTS), r):
            samples[name].append(await _import_ms(IMPORTS[name]))
    variants = {name: summarize(values) for name, values in samples.items()}
    for name, s in variants.items():
        _log(f"g {name}: median {s['median']:.1f} ms of {p.import_runs}")
    first = float(variants["import nexus_reactive"]["median"])
    return {
        "unit": "ms (in a fresh interpreter, the import statement alone)",
        "driven": f"{p.import_runs} fresh interpreters per statement, interleaved",
        "variants": variants,
        "ratios": {},
        "checks": {"import nexus_reactive, ms": first},
    }


# -- h: many stores on one shared connection ---------------------------------------------


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

        def counter() -> Callable[[Sequence[Message]], None]:
            finished = False

            def on_history(history: Sequence[Message]) -> None:
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
        variants = await _rounds("h", p.rounds, runs)
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


# -- i: the reference server ---------------------------------------------------------------


async def _idle_clients(suite: Suite, url: str) -> dict[str, Any]:
    p = suite.params
    argv = [
        sys.executable,
        "-m",
        "bench.idle_clients",
        url,
        str(p.idle_connections),
        str(p.idle_heartbeat),
        str(p.idle_hold),
    ]
    env = {**os.environ, "NEXUS_API_KEY": suite.api_key}
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        # stdin stays open while it runs: the child exits when it closes (we are gone).
        out, err = await asyncio.wait_for(
            asyncio.gather(proc.stdout.read(), proc.stderr.read()), 600
        )
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    if proc.returncode != 0:
        raise RuntimeError(f"idle clients failed:\n{err.decode(errors='replace')[-4000:]}")
    result: dict[str, Any] = json.loads(out)
    return result


async def server(suite: Suite) -> dict[str, Any]:
    p = suite.params
    servers.raise_open_files_limit()
    results: list[dict[str, Any]] = []
    rss: list[float] = []
    cpu: list[float] = []
    hb = servers.start_nexus_heartbeat(suite.api_key, p.idle_heartbeat)
    try:
        for r in range(p.server_rounds):
            base_rss = hb.rss_bytes() or 0
            c0, t0 = hb.cpu_seconds(), time.perf_counter()
            task = asyncio.ensure_future(_idle_clients(suite, hb.url))
            # The server's RSS at its peak: sampled while the clients hold.
            peak = base_rss
            while not task.done():
                peak = max(peak, hb.rss_bytes() or 0)
                await asyncio.wait({task}, timeout=0.25)
            result = task.result()
            c1, t1 = hb.cpu_seconds(), time.perf_counter()
            results.append(result)
            held = max(result["held"], 1)
            rss.append((peak - base_rss) / held)
            if c0 is not None and c1 is not None:
                cpu.append(100 * (c1 - c0) / (t1 - t0))
            _log(
                f"i round {r + 1}/{p.server_rounds}: held {result['held']:,} of "
                f"{result['clients']:,} idle connections (heartbeat {p.idle_heartbeat:g} s, "
                f"{p.idle_hold:g} s); connected in {result['connect_seconds']:.1f} s; "
                f"server +{rss[-1] / 1024:,.1f} KiB per connection"
            )
    finally:
        hb.stop()
    nexus = servers.start_nexus(suite.api_key)
    try:
        run = suite._inflight_run(lambda: library.library_asker(nexus.url, suite.api_key), nexus)
        asks = await _rounds("i", p.rounds, [("service.ask, 100 in flight @ reference", run)])
    finally:
        nexus.stop()
    held = [float(r["held"]) for r in results]
    variants: dict[str, Any] = {
        "idle connections": {
            "held": summarize(held),
            "connect all, s": summarize([r["connect_seconds"] for r in results]),
            "close all, s": summarize([r["close_seconds"] for r in results]),
            "server RSS per connection, bytes": summarize(rss),
            "client RSS per connection, bytes": summarize(
                [r["client_rss_per_connection"] for r in results]
            ),
        },
        **asks,
    }
    if cpu:
        variants["idle connections"]["server CPU % (connect, hold, close)"] = summarize(cpu)
    return {
        "unit": "connections; asks/s",
        "idle_connections": p.idle_connections,
        "heartbeat": p.idle_heartbeat,
        "hold_seconds": p.idle_hold,
        "driven": "the reference server (echo engine, server pings every heartbeat) in "
        "one process; the library's WebSocketService clients (client pings too) in one "
        "child process, at most 64 connecting at once",
        "variants": variants,
        "ratios": {"idle connections held / attempted": ratio(min(held), p.idle_connections)},
        "checks": {"idle connections held": min(held)},
    }
