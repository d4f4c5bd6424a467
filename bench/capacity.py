"""Section i ``server``: the reference server's capacity: idle connections with
heartbeats held by one process (clients: the library's own, in a child process,
:mod:`bench.idle_clients`), and the asks/s it answers with the echo engine, 100 in
flight.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from . import library, servers
from .rounds import log, rounds
from .stats import ratio, summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["server"]


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
            log(
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
        asks = await rounds("i", p.rounds, [("service.ask, 100 in flight @ reference", run)])
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
