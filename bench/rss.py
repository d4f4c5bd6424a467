"""The long flood for RSS, run in a fresh process so earlier sections do not colour it.

``python -m bench.rss URL N MAX_MESSAGES`` (API key in ``NEXUS_API_KEY``) receives a
flood of N frames through a ``use_websocket`` store with ``max_messages`` set,
samples this process's resident set size every 50 ms, and prints one JSON object:
``{"samples": [[messages_so_far, rss_bytes], ...], "seconds": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time

from nexus_reactive import use_websocket
from nexus_reactive.messages import Message

from . import traffic

__all__ = ["rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """This process's resident set size now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except OSError:
        # Elsewhere only the peak is available (kilobytes on Linux, bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


async def flood(url: str, n: int, max_messages: int, api_key: str) -> dict[str, object]:
    """Receive the flood through a store; sample RSS while it runs."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0
    samples: list[tuple[int, int]] = []

    def on_message(message: Message) -> None:
        nonlocal count
        count += 1
        if message.id == traffic.SENTINEL_ID and not done.done():
            done.set_result(None)

    async def sample() -> None:
        while True:
            samples.append((count, rss_bytes()))
            await asyncio.sleep(0.05)

    t0 = time.perf_counter()
    store = use_websocket(url=f"{url}?n={n}", api_key=api_key, max_messages=max_messages)
    store.messages.subscribe(lambda history: None)  # the one UI-like subscriber
    store.service.messages.subscribe(on_message)  # progress, to label the samples
    sampler = asyncio.create_task(sample())
    try:
        await asyncio.wait_for(done, 600)
        samples.append((count, rss_bytes()))
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await store.close()
    if count != n + 1:
        raise RuntimeError(f"rss flood: received {count} messages, expected {n + 1}")
    return {"samples": samples, "seconds": time.perf_counter() - t0}


def main() -> None:
    url, n, max_messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    result = asyncio.run(flood(url, n, max_messages, os.environ["NEXUS_API_KEY"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
