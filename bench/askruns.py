"""How an ask is timed: a sequential run and a run with many in flight, with the
share of a core the client and the server used.

Every ask section (b, f, i, j, k) builds its variants from these two, through
:meth:`bench.sections.Suite._sequential_run` and ``_inflight_run``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from . import baselines, servers
from .rounds import Run
from .stats import percentile

if TYPE_CHECKING:
    from .sections import Params

__all__ = ["Asker", "CpuShare", "inflight_run", "latency", "sequential_run"]

#: Opens a client for one run; the client is an ask to await, again and again.
Asker = Callable[[], AbstractAsyncContextManager[baselines.AskFn]]


def sequential_run(p: Params, client: Asker, server: servers.ServerProcess) -> Run:
    """``sequential_asks`` asks one after another: p50, p99, asks/s, CPU shares."""

    async def run() -> dict[str, float]:
        async with client() as ask:
            for _ in range(p.warmup_asks):
                await ask()
            with CpuShare(server) as cpu:
                timed = await latency(ask, p.sequential_asks)
        return {**timed, "asks/s": p.sequential_asks / cpu.wall, **cpu.shares()}

    return run


async def latency(ask: baselines.AskFn, asks: int) -> dict[str, float]:
    """``asks`` asks one after another: their p50 and p99 in microseconds."""
    latencies: list[float] = []
    clock = time.perf_counter
    for _ in range(asks):
        start = clock()
        await ask()
        latencies.append(clock() - start)
    return {"p50 us": percentile(latencies, 50) * 1e6, "p99 us": percentile(latencies, 99) * 1e6}


def inflight_run(p: Params, client: Asker, server: servers.ServerProcess) -> Run:
    """``inflight_asks`` asks, ``concurrency`` of them in flight: asks/s, CPU shares."""

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

            with CpuShare(server) as cpu:
                await asyncio.gather(*(worker() for _ in range(p.concurrency)))
        return {"asks/s": p.inflight_asks / cpu.wall, **cpu.shares()}

    return run


class CpuShare:
    """Wall time of a block, and the share of one core the client and server used.

    A server near 100% means the run measured the server, not the client.
    """

    def __init__(self, server: servers.ServerProcess) -> None:
        self._server = server
        self.wall = 0.0
        self._client = 0.0
        self._server_cpu: float | None = None

    def __enter__(self) -> CpuShare:
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
