"""Where the time of the receive path goes.

``python -m bench.profile [--variant store|service|raw|naive] [--messages N]
[--pyinstrument]`` starts the flood server, receives one warm-up flood, then one
flood under cProfile (or pyinstrument, if installed and asked for) and prints the
top functions by own time and by cumulative time.

``python -m bench.profile --asks`` prints the CPU time per ``service.ask`` with no
socket, 100 in flight and one at a time (:mod:`bench.askcost`).

``python -m bench.profile --layers`` measures, without a profiler and without a
socket, the nanoseconds per message of each layer of the pipeline, adding one
layer at a time (decode, the service's frame handler, a subscriber, the store),
so the cost of each is the difference between two lines. It counts the thread's CPU
time, not the wall clock: on a shared machine, time spent descheduled is not the
pipeline's (``--wall`` for the wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import secrets
import time
from collections.abc import Callable

import msgspec

from nexus_reactive import WebSocketConfig, WebSocketService, codec
from nexus_reactive.messages import KnownMessage

from . import baselines, library, servers, traffic

__all__ = ["main"]

_VARIANTS = {
    "store": library.flood_store,
    "service": library.flood_service,
    "raw": baselines.flood_raw,
    "naive": baselines.flood_naive,
}


def main(argv: list[str] | None = None) -> int:
    """Run the profile; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--variant", choices=sorted(_VARIANTS), default="store")
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--pyinstrument", action="store_true")
    parser.add_argument("--layers", action="store_true", help="per-layer ns/message")
    parser.add_argument("--asks", action="store_true", help="CPU per ask, no socket")
    parser.add_argument("--repeats", type=int, default=5, help="--layers: best of this many")
    parser.add_argument("--wall", action="store_true", help="--layers: wall clock, not CPU")
    args = parser.parse_args(argv)
    if args.asks:
        from .askcost import ask_cost

        return ask_cost(args.repeats)
    if args.layers:
        return _layers(args.messages, repeats=args.repeats, clock=_wall if args.wall else _cpu)
    run = _VARIANTS[args.variant]
    key = secrets.token_urlsafe(16)
    flood = servers.start_flood()
    try:
        url = f"{flood.url}?n={args.messages}"
        asyncio.run(run(f"{flood.url}?n=2000", 2000, key))
        if args.pyinstrument:
            from pyinstrument import Profiler  # type: ignore[import-not-found]

            profiler = Profiler(interval=0.0005)
            profiler.start()
            elapsed = asyncio.run(run(url, args.messages, key))
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=False))
        else:
            prof = cProfile.Profile()
            elapsed = prof.runcall(asyncio.run, run(url, args.messages, key))
            stats = pstats.Stats(prof)
            stats.sort_stats("tottime").print_stats(args.top)
            stats.sort_stats("cumulative").print_stats(args.top)
        print(f"{args.variant}: {args.messages / elapsed:,.0f} msg/s (under the profiler)")
    finally:
        servers.stop_all()
    return 0


_cpu = time.thread_time
_wall = time.perf_counter


def _time_batches(
    frames: list[bytes],
    handle: Callable[[bytes], object],
    batch: int,
    clock: Callable[[], float] = _cpu,
) -> float:
    """Seconds to hand every frame to ``handle``, yielding to the loop per batch."""

    async def run() -> float:
        t0 = clock()
        for i in range(0, len(frames), batch):
            for frame in frames[i : i + batch]:
                handle(frame)
            await asyncio.sleep(0)
        return clock() - t0

    return asyncio.get_event_loop().run_until_complete(run())


def _layers(n: int, batch: int = 256, repeats: int = 5, clock: Callable[[], float] = _cpu) -> int:
    key = secrets.token_urlsafe(16)
    pool = traffic.response_frames()
    frames = [pool[i % len(pool)] for i in range(n)]
    raw_decoder = msgspec.json.Decoder(KnownMessage)
    flood = servers.start_flood()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        bare = WebSocketService(WebSocketConfig(url=flood.url, api_key=key))
        subscribed = WebSocketService(WebSocketConfig(url=flood.url, api_key=key))
        subscribed.messages.subscribe(lambda message: None)
        store_cm = library.idle_store(flood.url, key, 1_000)
        store = loop.run_until_complete(store_cm.__aenter__())
        store.messages.subscribe(lambda history: None)
        layers: list[tuple[str, Callable[[bytes], object]]] = [
            ("loop only", lambda frame: None),
            ("json.loads (naive parse)", json.loads),
            ("msgspec Decoder.decode (typed, bare)", raw_decoder.decode),
            ("codec.decode", codec.decode),
            ("Receiver.on_frame, no subscriber", bare._receiver.on_frame),
            ("Receiver.on_frame + 1 messages subscriber", subscribed._receiver.on_frame),
            (
                "store: Receiver.on_frame -> store (+1 store subscriber)",
                store.service._receiver.on_frame,
            ),
        ]
        best: dict[str, float] = {}
        for _ in range(repeats):
            for name, handle in layers:
                gc.collect()
                elapsed = _time_batches(frames, handle, batch, clock)
                best[name] = min(best.get(name, elapsed), elapsed)
        loop.run_until_complete(store_cm.__aexit__(None, None, None))
        loop.run_until_complete(bare.close())
        loop.run_until_complete(subscribed.close())
        what = "CPU" if clock is _cpu else "wall"
        print(f"{what} ns per message over {n:,} frames, best of {repeats}, {batch} per tick:")
        previous = None
        for name, _ in layers:
            ns = best[name] / n * 1e9
            step = "" if previous is None else f"  (+{ns - previous:,.0f})"
            print(f"  {ns:8,.0f} ns  {1e9 / ns if ns else 0:12,.0f} msg/s  {name}{step}")
            if name not in ("json.loads (naive parse)",):
                previous = ns
    finally:
        loop.close()
        servers.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
