"""The five sections of the suite. Each returns a JSON-ready dict.

Within a section the variants run round-robin: every round runs each variant once,
the starting variant rotating from round to round, so slow drift of the machine
(other work, thermal state) spreads over all variants instead of favouring one.
Each variant also runs once, unrecorded, before the first round (warm-up).

a ``flood``    messages/s of N small response frames: the store, service.messages,
               and baselines (raw aiohttp, raw + codec.decode, aiohttp + json.loads,
               websockets + json.loads).
b ``asks``     sequential asks (p50/p99 latency, asks/s) and 100 in flight (asks/s)
               against the reference server; service.ask vs a naive aiohttp client;
               a raw TCP line echo as the floor.
c ``history``  the store's append path at 10k, 50k and 200k messages of history.
d ``memory``   bytes retained per stored message (tracemalloc) and RSS over a long
               flood with a bounded history.
e ``restart``  from a restarted server's startup line to the first answered ask.

f..i (uvloop, import time, many stores, the reference server's capacity)
live in :mod:`bench.scale`; j (the journal, plain and encrypted) in :mod:`bench.journal`;
k (signed and sealed frames) in :mod:`bench.frames`; l (what metrics and
OpenTelemetry cost) in :mod:`bench.observability`.
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
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from nexus_reactive import WebSocketConfig, WebSocketService, codec
from nexus_reactive.messages import Message

from . import baselines, compression, library, observability, scale, servers, traffic
from .journal import journal as journal_section
from .stats import percentile, ratio, summarize

__all__ = ["SECTIONS", "Params", "Suite"]

Flood = Callable[[str, int, str], Awaitable[float]]
Asker = Callable[[], AbstractAsyncContextManager[baselines.AskFn]]


@dataclass
class Params:
    """Sizes of the work; :meth:`quick` is the smoke mode."""

    rounds: int = 5
    messages: int = 200_000  # a: frames per flood
    sequential_asks: int = 2_000  # b: asks per sequential run
    inflight_asks: int = 20_000  # b: asks per run with `concurrency` in flight
    concurrency: int = 100
    warmup_asks: int = 100
    history_sizes: tuple[int, ...] = (10_000, 50_000, 200_000)  # c
    history_messages: int = 200_000  # c: messages timed per run
    history_batch: int = 256  # c: messages per event-loop tick
    memory_messages: int = 20_000  # d: messages retained under tracemalloc
    rss_messages: int = 1_000_000  # d: the long flood
    rss_max_messages: int = 1_000
    restart_rounds: int = 5  # e
    reconnect_interval: float = 0.05  # e
    max_reconnect_interval: float = 0.1  # e
    import_runs: int = 15  # g: fresh interpreters per import statement
    stores: int = 1_000  # h: stores on one shared connection
    stores_asks: int = 10  # h: asks per store (answers routed per store)
    stores_flood: int = 20_000  # h: answers no store asked for, on the shared connection
    stores_broadcast: int = 2_000  # h: unsolicited frames, each delivered to every store
    idle_connections: int = 5_000  # i: idle clients of one server process
    idle_heartbeat: float = 5.0  # i: seconds between pings, client and server
    idle_hold: float = 15.0  # i: seconds they stay idle
    server_rounds: int = 1  # i: rounds of the idle-connections run
    journal_asks: int = 20_000  # j: asks recorded per run, plain and encrypted
    journal_rows: int = 1_000  # j: unsent asks (and as many answers) a timed open restores
    compression_asks: int = 500  # m: asks per throughput run, each variant
    compression_in_flight: int = 20  # m

    @classmethod
    def quick(cls) -> Params:
        return cls(
            rounds=1,
            messages=20_000,
            sequential_asks=200,
            inflight_asks=2_000,
            warmup_asks=20,
            history_messages=20_000,
            memory_messages=5_000,
            rss_messages=50_000,
            restart_rounds=1,
            import_runs=3,
            stores=50,
            stores_asks=2,
            stores_flood=1_000,
            stores_broadcast=100,
            idle_connections=100,
            idle_heartbeat=1.0,
            idle_hold=1.5,
            journal_asks=1_000,
            journal_rows=200,
            compression_asks=40,
        )


def _rotated(items: Sequence[Any], by: int) -> list[Any]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def _log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


@dataclass
class Suite:
    """Runs the sections; owns the servers it starts (stopped by :meth:`close`)."""

    params: Params
    api_key: str
    _flood: servers.ServerProcess | None = field(default=None, init=False)

    def flood_url(self) -> str:
        if self._flood is None:
            self._flood = servers.start_flood()
        return self._flood.url

    def close(self) -> None:
        if self._flood is not None:
            self._flood.stop()
            self._flood = None

    # -- a: inbound flood ----------------------------------------------------------

    async def flood(self) -> dict[str, Any]:
        p = self.params
        variants: dict[str, Flood] = {
            "store": library.flood_store,
            "service.messages": library.flood_service,
            "raw aiohttp": baselines.flood_raw,
            "raw aiohttp + codec.decode": baselines.flood_raw_decode,
            "aiohttp + json.loads": baselines.flood_naive,
            "websockets + json.loads": baselines.flood_websockets,
            "picows": baselines.flood_picows,
            "picows + codec.decode": baselines.flood_picows_decode,
            "service.messages (picows transport)": library.flood_service_picows,
        }
        base = self.flood_url()
        warm = min(p.messages, 2_000)
        for run in variants.values():
            await run(f"{base}?n={warm}", warm, self.api_key)
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(p.rounds):
            for name in _rotated(list(variants), r):
                gc.collect()
                elapsed = await variants[name](f"{base}?n={p.messages}", p.messages, self.api_key)
                samples[name].append(p.messages / elapsed)
                _log(f"a round {r + 1}/{p.rounds}: {name}: {p.messages / elapsed:,.0f} msg/s")
        med = {name: summarize(s)["median"] for name, s in samples.items()}
        naive, raw, wsl = (
            med["aiohttp + json.loads"],
            med["raw aiohttp"],
            med["websockets + json.loads"],
        )
        return {
            "unit": "msg/s",
            "messages": p.messages,
            "frame_bytes": traffic.FRAME_SIZE,
            "variants": {name: summarize(s) for name, s in samples.items()},
            "ratios": {
                "store / naive": ratio(med["store"], naive),
                "store / raw": ratio(med["store"], raw),
                "store / websockets": ratio(med["store"], wsl),
                "service.messages / naive": ratio(med["service.messages"], naive),
                "service.messages / raw": ratio(med["service.messages"], raw),
                "service.messages / websockets": ratio(med["service.messages"], wsl),
                "store / picows": ratio(med["store"], med["picows"]),
                "service.messages / picows": ratio(med["service.messages"], med["picows"]),
                "raw aiohttp / picows": ratio(raw, med["picows"]),
                "service.messages: picows transport / aiohttp transport": ratio(
                    med["service.messages (picows transport)"], med["service.messages"]
                ),
            },
        }

    # -- b: asks ---------------------------------------------------------------------

    async def asks(self) -> dict[str, Any]:
        p = self.params
        # The targets compare clients, so they run against a lean server that answers
        # at once (as a fast native server would); the reference server, which does
        # much more per ask, is measured too, for information ("@ reference").
        lean = servers.start_lean(self.api_key)
        nexus = servers.start_nexus(self.api_key)
        echo = servers.start_echo()
        try:
            key = self.api_key
            lean_url, ref_url = lean.url, nexus.url
            clients: dict[str, Asker] = {
                "service.ask": lambda: library.library_asker(lean_url, key),
                "naive aiohttp": lambda: baselines.naive_asker(lean_url, key),
            }
            floor: Asker = lambda: baselines.echo_line(echo.url)  # noqa: E731
            runs: list[tuple[str, Callable[[], Awaitable[dict[str, float]]]]] = []
            for name, client in clients.items():
                runs.append((f"{name} sequential", self._sequential_run(client, lean)))
                runs.append((f"{name} {p.concurrency} in flight", self._inflight_run(client, lean)))
            # Anchors, sequential only: the fastest client we can write, and the service
            # on the prototype picows transport.
            anchors: dict[str, Asker] = {
                "picows + msgspec": lambda: baselines.picows_asker(lean_url, key),
                "service.ask (picows transport)": lambda: library.library_asker(
                    lean_url, key, "picows"
                ),
            }
            for name, client in anchors.items():
                runs.append((f"{name} sequential", self._sequential_run(client, lean)))
            reference: dict[str, Asker] = {
                "service.ask": lambda: library.library_asker(ref_url, key),
                "naive aiohttp": lambda: baselines.naive_asker(ref_url, key),
            }
            for name, client in reference.items():
                runs.append(
                    (
                        f"{name} {p.concurrency} in flight @ reference",
                        self._inflight_run(client, nexus),
                    )
                )
            runs.append(("raw TCP echo sequential", self._sequential_run(floor, echo)))
            samples: dict[str, dict[str, list[float]]] = {name: {} for name, _ in runs}
            for r in range(p.rounds):
                for name, run in _rotated(runs, r):
                    gc.collect()
                    result = await run()
                    for metric, value in result.items():
                        samples[name].setdefault(metric, []).append(value)
                    shown = ", ".join(f"{k} {v:,.1f}" for k, v in result.items())
                    _log(f"b round {r + 1}/{p.rounds}: {name}: {shown}")
        finally:
            echo.stop()
            nexus.stop()
            lean.stop()
        variants = {
            name: {metric: summarize(values) for metric, values in metrics.items()}
            for name, metrics in samples.items()
        }

        def med(name: str, metric: str) -> float:
            return float(variants[name][metric]["median"])

        c = p.concurrency
        return {
            "unit": "asks/s; latency in microseconds",
            "sequential_asks": p.sequential_asks,
            "inflight_asks": p.inflight_asks,
            "concurrency": c,
            "variants": variants,
            "ratios": {
                f"{c} in flight: service / naive": ratio(
                    med(f"service.ask {c} in flight", "asks/s"),
                    med(f"naive aiohttp {c} in flight", "asks/s"),
                ),
                "sequential p50: service / echo floor": ratio(
                    med("service.ask sequential", "p50 us"),
                    med("raw TCP echo sequential", "p50 us"),
                ),
                "sequential p50: service / naive": ratio(
                    med("service.ask sequential", "p50 us"),
                    med("naive aiohttp sequential", "p50 us"),
                ),
                "sequential asks/s: service / naive": ratio(
                    med("service.ask sequential", "asks/s"),
                    med("naive aiohttp sequential", "asks/s"),
                ),
                "sequential p99: service / echo floor": ratio(
                    med("service.ask sequential", "p99 us"),
                    med("raw TCP echo sequential", "p99 us"),
                ),
                "sequential p50: picows + msgspec / echo floor": ratio(
                    med("picows + msgspec sequential", "p50 us"),
                    med("raw TCP echo sequential", "p50 us"),
                ),
                "sequential p50: naive / echo floor": ratio(
                    med("naive aiohttp sequential", "p50 us"),
                    med("raw TCP echo sequential", "p50 us"),
                ),
                "sequential p50: aiohttp transport / picows transport": ratio(
                    med("service.ask sequential", "p50 us"),
                    med("service.ask (picows transport) sequential", "p50 us"),
                ),
            },
        }

    def _sequential_run(
        self, client: Asker, server: servers.ServerProcess
    ) -> Callable[[], Awaitable[dict[str, float]]]:
        p = self.params

        async def run() -> dict[str, float]:
            async with client() as ask:
                for _ in range(p.warmup_asks):
                    await ask()
                latencies: list[float] = []
                clock = time.perf_counter
                with _CpuShare(server) as cpu:
                    for _ in range(p.sequential_asks):
                        start = clock()
                        await ask()
                        latencies.append(clock() - start)
            return {
                "p50 us": percentile(latencies, 50) * 1e6,
                "p99 us": percentile(latencies, 99) * 1e6,
                "asks/s": p.sequential_asks / cpu.wall,
                **cpu.shares(),
            }

        return run

    def _inflight_run(
        self, client: Asker, server: servers.ServerProcess
    ) -> Callable[[], Awaitable[dict[str, float]]]:
        p = self.params

        async def run() -> dict[str, float]:
            async with client() as ask:
                for _ in range(p.warmup_asks):
                    await ask()
                left = p.inflight_asks

                async def worker() -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        await ask()

                with _CpuShare(server) as cpu:
                    await asyncio.gather(*(worker() for _ in range(p.concurrency)))
            return {"asks/s": p.inflight_asks / cpu.wall, **cpu.shares()}

        return run

    # -- c: history size -------------------------------------------------------------

    async def history(self) -> dict[str, Any]:
        """Messages/s through ``Intake.on_message`` (the store's subscriber of
        ``service.messages``) with a full history of each size, fed pre-decoded
        messages in batches of ``history_batch`` per event-loop tick, so the store
        flushes (emits to its one subscriber) once per batch as under a real flood."""
        p = self.params
        pool = [codec.decode(f) for f in traffic.response_frames()]
        timed = [pool[i % len(pool)] for i in range(p.history_messages)]
        samples: dict[int, list[float]] = {size: [] for size in p.history_sizes}
        for r in range(p.rounds):
            for size in _rotated(list(p.history_sizes), r):
                gc.collect()
                rate = await self._history_run(size, pool, timed)
                samples[size].append(rate)
                _log(f"c round {r + 1}/{p.rounds}: history {size:,}: {rate:,.0f} msg/s")
        variants = {f"history {size:,}": summarize(s) for size, s in samples.items()}
        lo, hi = min(p.history_sizes), max(p.history_sizes)
        return {
            "unit": "msg/s",
            "driven": "in-process: pre-decoded messages fed to the store's on-message "
            f"subscriber, {p.history_batch} per event-loop tick, history full beforehand",
            "messages": p.history_messages,
            "variants": variants,
            "ratios": {
                f"history {hi:,} / {lo:,}": ratio(
                    float(variants[f"history {hi:,}"]["median"]),
                    float(variants[f"history {lo:,}"]["median"]),
                )
            },
        }

    async def _history_run(self, size: int, pool: list[Message], timed: list[Message]) -> float:
        batch = self.params.history_batch
        async with library.idle_store(self.flood_url(), self.api_key, size) as store:
            store.messages.subscribe(lambda history: None)
            # The store's own subscriber of service.messages: the on-message path.
            on_message = store._intake.on_message
            fill = [pool[i % len(pool)] for i in range(size)]
            for i in range(0, size, batch):
                for message in fill[i : i + batch]:
                    on_message(message)
                await asyncio.sleep(0)
            if len(store.messages.value) != size:
                raise RuntimeError("history: the store did not fill to max_messages")
            t0 = time.perf_counter()
            for i in range(0, len(timed), batch):
                for message in timed[i : i + batch]:
                    on_message(message)
                await asyncio.sleep(0)
            elapsed = time.perf_counter() - t0
        return len(timed) / elapsed

    # -- d: memory -------------------------------------------------------------------

    async def memory(self) -> dict[str, Any]:
        p = self.params
        store_bytes: list[float] = []
        dict_bytes: list[float] = []
        for r in range(p.rounds):
            frames = traffic.response_frames(p.memory_messages)
            store_bytes.append(await self._retained_by_store(frames))
            dict_bytes.append(_retained_by_json(frames))
            _log(
                f"d round {r + 1}/{p.rounds}: store {store_bytes[-1]:,.0f} B/msg, "
                f"json.loads dict {dict_bytes[-1]:,.0f} B/msg"
            )
        rss = await self._rss_flood()
        _log(
            f"d RSS over {p.rss_messages:,} messages: start {rss['start'] / 2**20:,.1f} MiB, "
            f"end {rss['end'] / 2**20:,.1f} MiB, max {rss['max'] / 2**20:,.1f} MiB"
        )
        per_message = summarize(store_bytes)
        return {
            "unit": "bytes per stored message; RSS in bytes",
            "driven": "tracemalloc: distinct frames through the service's frame handler "
            "(decode, dispatch, store) into a store whose history keeps them all; RSS: "
            "a fresh process receiving the long flood from the flood server",
            "frame_bytes": traffic.FRAME_SIZE,
            "messages": p.memory_messages,
            "variants": {
                "store (msgspec structs)": per_message,
                "json.loads dict (reference)": summarize(dict_bytes),
            },
            "rss": rss,
            "ratios": {
                "bytes per stored message / frame bytes": ratio(
                    float(per_message["median"]), traffic.FRAME_SIZE
                ),
                "RSS end / start": ratio(rss["end"], rss["start"]),
            },
        }

    async def _retained_by_store(self, frames: list[bytes]) -> float:
        async with library.idle_store(self.flood_url(), self.api_key, len(frames)) as store:
            store.messages.subscribe(lambda history: None)
            on_frame = store.service._receiver.on_frame  # decode -> dispatch -> messages -> store
            batch = self.params.history_batch
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                for i in range(0, len(frames), batch):
                    for frame in frames[i : i + batch]:
                        on_frame(frame)
                    await asyncio.sleep(0)
                gc.collect()
                after = tracemalloc.get_traced_memory()[0]
            finally:
                tracemalloc.stop()
            if len(store.messages.value) != len(frames):
                raise RuntimeError("memory: the store did not keep every message")
        return (after - before) / len(frames)

    async def _rss_flood(self) -> dict[str, Any]:
        p = self.params
        argv = [
            sys.executable,
            "-m",
            "bench.rss",
            self.flood_url(),
            str(p.rss_messages),
            str(p.rss_max_messages),
        ]
        env = {**os.environ, "NEXUS_API_KEY": self.api_key}
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"the RSS flood failed:\n{err.decode(errors='replace')[-4000:]}")
        result = json.loads(out)
        samples = result["samples"]
        # After warm-up: from the first sample past 10% of the flood.
        warm = next((i for i, (count, _) in enumerate(samples) if count >= p.rss_messages // 10), 0)
        rss = [value for _, value in samples[warm:]]
        return {
            "messages": p.rss_messages,
            "max_messages": p.rss_max_messages,
            "seconds": result["seconds"],
            "first": samples[0][1],
            "start": rss[0],
            "end": rss[-1],
            "max": max(rss),
            "samples": samples,
        }

    # -- f..i: the fastest peers as anchors, and capacity (bench/scale.py) ----------------------

    async def uvloop(self) -> dict[str, Any]:
        return await scale.uvloop_section(self)

    async def imports(self) -> dict[str, Any]:
        return await scale.imports(self)

    async def stores(self) -> dict[str, Any]:
        return await scale.stores(self)

    async def server(self) -> dict[str, Any]:
        return await scale.server(self)

    # -- j: the journal at rest, plain and encrypted (bench/journal.py) --------------

    async def journal(self) -> dict[str, Any]:
        return await journal_section(self)

    # -- k: signed and sealed frames (bench/frames.py) ------------------------------

    async def frames(self) -> dict[str, Any]:
        from .frames import frames

        return await frames(self)

    # -- l: what metrics and OpenTelemetry cost (bench/observability.py) ------------

    async def observability(self) -> dict[str, Any]:
        return await observability.observability(self)

    # -- m: permessage-deflate on and off (bench/compression.py) ----------------------

    async def compression(self) -> dict[str, Any]:
        p = self.params
        return await compression.section(
            p.rounds, p.compression_asks, p.compression_in_flight, self.api_key
        )

    # -- e: restart ------------------------------------------------------------------

    async def restart(self) -> dict[str, Any]:
        p = self.params
        server = servers.start_nexus(self.api_key)
        port = server.port
        config = WebSocketConfig(
            url=server.url,
            api_key=self.api_key,
            reconnect_interval=p.reconnect_interval,
            max_reconnect_interval=p.max_reconnect_interval,
            max_reconnect_attempts=None,
            request_timeout=60.0,
        )
        from_line: list[float] = []
        from_kill: list[float] = []
        try:
            async with WebSocketService(config) as service:
                await service.ask(traffic.QUERY)
                for r in range(p.restart_rounds):
                    killed = time.perf_counter()
                    server.kill()
                    await library.wait_until(lambda: not service.state.value.connected)
                    answer = asyncio.ensure_future(service.ask(traffic.QUERY))
                    try:
                        server, listening = await self._respawn(port)
                        await answer
                    finally:
                        if not answer.done():
                            answer.cancel()
                        await asyncio.gather(answer, return_exceptions=True)
                    answered = time.perf_counter()
                    from_line.append((answered - listening) * 1e3)
                    from_kill.append((answered - killed) * 1e3)
                    _log(
                        f"e round {r + 1}/{p.restart_rounds}: {from_line[-1]:,.1f} ms from the "
                        f"startup line, {from_kill[-1]:,.1f} ms from the kill"
                    )
        finally:
            server.stop()
        return {
            "unit": "ms",
            "reconnect_interval": p.reconnect_interval,
            "max_reconnect_interval": p.max_reconnect_interval,
            "variants": {
                "startup line -> first answer": summarize(from_line),
                "kill -> first answer": summarize(from_kill),
            },
            "ratios": {},
        }

    async def _respawn(self, port: int) -> tuple[servers.ServerProcess, float]:
        """Start the reference server again on ``port``; when did it say it listens?"""
        for attempt in range(5):
            server = servers.nexus_process(self.api_key, port)
            server.spawn()
            try:
                return server, await asyncio.to_thread(server.wait_listening)
            except RuntimeError:
                # The port may still be held for a moment by the killed process.
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")


class _CpuShare:
    """Wall time of a block, and the share of one core the client and server used.

    A server near 100% means the run measured the server, not the client.
    """

    def __init__(self, server: servers.ServerProcess) -> None:
        self._server = server
        self.wall = 0.0
        self._client = 0.0
        self._server_cpu: float | None = None

    def __enter__(self) -> _CpuShare:
        self._t0 = time.perf_counter()
        self._c0 = time.process_time()
        self._s0 = self._server.cpu_seconds()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        self._client = time.process_time() - self._c0
        s1 = self._server.cpu_seconds()
        if s1 is not None and self._s0 is not None:
            self._server_cpu = s1 - self._s0

    def shares(self) -> dict[str, float]:
        shares = {"client CPU %": 100 * self._client / self.wall}
        if self._server_cpu is not None:
            shares["server CPU %"] = 100 * self._server_cpu / self.wall
        return shares


def _retained_by_json(frames: list[bytes]) -> float:
    """Bytes retained per message by the naive way: a list of ``json.loads`` dicts."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [json.loads(frame) for frame in frames]
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / len(frames)


#: Section keys in order, with the letters of the issue.
SECTIONS: dict[str, str] = {
    "a": "flood",
    "b": "asks",
    "c": "history",
    "d": "memory",
    "e": "restart",
    "f": "uvloop",
    "g": "imports",
    "h": "stores",
    "i": "server",
    "j": "journal",
    "k": "frames",
    "l": "observability",
    "m": "compression",
}
