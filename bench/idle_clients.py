"""``python -m bench.idle_clients URL N HEARTBEAT HOLD``: N idle clients, one process.

Opens ``N`` :class:`~nexus_reactive.WebSocketService` connections to ``URL`` (key from
``NEXUS_API_KEY``; ``HEARTBEAT`` seconds between client pings), at most
``CONCURRENCY`` connecting at once (the server's accept backlog is finite), holds them
idle for ``HOLD`` seconds, counts how many are still connected, closes them all and
prints one JSON line. It raises its own soft limit on open files first, and exits
when its stdin closes (the parent is gone). Used by the ``server`` section.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
import threading
import time

from nexus_reactive import NexusError, WebSocketConfig, WebSocketService

CONCURRENCY = 64


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def main(url: str, n: int, heartbeat: float, hold: float) -> dict[str, object]:
    config = WebSocketConfig(
        url=url,
        api_key=os.environ["NEXUS_API_KEY"],
        heartbeat=heartbeat,
        connect_timeout=60.0,
        max_reconnect_attempts=3,
    )
    services = [WebSocketService(config) for _ in range(n)]
    gate = asyncio.Semaphore(CONCURRENCY)
    failed = 0

    async def connect(service: WebSocketService) -> None:
        nonlocal failed
        async with gate:
            try:
                await service.connect()
            except NexusError:
                failed += 1

    rss0 = _rss()
    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(connect(s) for s in services))
        connect_seconds = time.perf_counter() - t0
        connected = sum(s.state.value.connected for s in services)
        rss1 = _rss()
        c0 = time.process_time()
        await asyncio.sleep(hold)
        hold_cpu = time.process_time() - c0
        held = sum(s.state.value.connected for s in services)
    finally:
        t1 = time.perf_counter()
        await asyncio.gather(*(s.close() for s in services), return_exceptions=True)
        close_seconds = time.perf_counter() - t1
    return {
        "clients": n,
        "connected": connected,
        "failed": failed,
        "held": held,
        "connect_seconds": connect_seconds,
        "close_seconds": close_seconds,
        "client_rss_per_connection": (rss1 - rss0) / max(connected, 1),
        "client_cpu_share_idle": hold_cpu / hold,
    }


if __name__ == "__main__":
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def watch() -> None:
        with contextlib.suppress(OSError):
            sys.stdin.buffer.read()
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    url, n, heartbeat, hold = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(asyncio.run(main(url, n, heartbeat, hold))), flush=True)
    os._exit(0)  # not a normal shutdown: the watchdog thread is blocked reading stdin
