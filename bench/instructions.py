"""Instructions per ask and per message, counted by valgrind: ``python -m bench.instructions``.

Wall-clock and even CPU-time ratios move by 20-40% on a shared 2-core machine; the
number of instructions a client executes does not. Each variant runs in its own
interpreter under callgrind (the servers run natively, in their own processes, and are
not counted), twice, with ``small`` and ``large`` asks or frames: the difference divided
by ``large - small`` is what one more ask or message costs, start-up and connecting
cancelled out. ``PYTHONHASHSEED=0`` keeps the two runs alike.

It counts user-space instructions only: the kernel's share (loopback, system calls) and
what a cache miss costs are not in it, so it complements ``bench.run``'s ratios rather
than replacing them. It needs valgrind (``apt install valgrind``), and takes a few
minutes: callgrind runs code ~50x slower.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import baselines, ceiling, library, servers
from .baselines import AskFn

__all__ = ["main"]

IN_FLIGHT = 100
_ASKERS = {
    "service.ask": library.library_asker,
    "naive aiohttp": baselines.naive_asker,
    "ceiling": ceiling.ceiling_asker,
}
_FLOODS: dict[str, Callable[[str, int, str], Coroutine[Any, Any, float]]] = {
    "raw aiohttp": baselines.flood_raw,
    "service.messages": library.flood_service,
    "store": library.flood_store,
}
_COLLECTED = re.compile(rb"Collected : (\d+)")


async def _sequential(variant: str, url: str, key: str, n: int) -> None:
    async with _ASKERS[variant](url, key) as ask:
        for _ in range(n):
            await ask()


async def _asks(variant: str, url: str, key: str, n: int) -> None:
    async with _ASKERS[variant](url, key) as ask:
        left = n

        async def worker(ask: AskFn) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await ask()

        await asyncio.gather(*(worker(ask) for _ in range(IN_FLIGHT)))


def _child(kind: str, variant: str, url: str, key: str, n: int) -> None:
    if kind == "asks":
        asyncio.run(_asks(variant, url, key, n))
    elif kind == "sequential":
        asyncio.run(_sequential(variant, url, key, n))
    else:
        asyncio.run(_FLOODS[variant](f"{url}?n={n}", n, key))


def _count(kind: str, variant: str, url: str, key: str, n: int) -> int:
    """User-space instructions of one child run under callgrind."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    argv += [sys.executable, "-m", "bench.instructions", "--child", kind, variant, url, str(n)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "NEXUS_API_KEY": key}
    done = subprocess.run(argv, capture_output=True, env=env, timeout=1800, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        tail = done.stderr.decode(errors="replace")[-2000:]
        raise RuntimeError(f"{kind} {variant!r} with n={n} failed under callgrind:\n{tail}")
    return int(found[1])


def _per_unit(kind: str, variant: str, url: str, key: str, small: int, large: int) -> float:
    few, many = (_count(kind, variant, url, key, n) for n in (small, large))
    return (many - few) / (large - small)


def _report(kind: str, unit: str, costs: dict[str, float], ratios: list[tuple[str, str]]) -> None:
    """Print the costs, and each ``(a, b)`` of ``ratios`` as ``b``'s cost over ``a``'s: how
    many times ``a``'s speed the same work at ``b``'s cost would be (bench.run's terms)."""
    print(f"== {kind}: user-space instructions per {unit}")
    for name, cost in costs.items():
        print(f"   {name:<32} {cost:>10,.0f}")
    for a, b in ratios:
        print(f"   ratio  {a} / {b} (as speed): {costs[b] / costs[a]:.2f}x")


def main(argv: list[str] | None = None) -> int:
    """Count and print; return the exit code."""
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--asks", type=int, nargs=2, default=(500, 2_500), metavar="N")
    parser.add_argument("--sequential", type=int, nargs=2, default=(300, 1_500), metavar="N")
    parser.add_argument("--flood", type=int, nargs=2, default=(5_000, 25_000), metavar="N")
    parser.add_argument(
        "--only", choices=("asks", "sequential", "flood"), help="one of the three measures"
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        kind, variant, url, n = args.child
        _child(kind, variant, url, os.environ["NEXUS_API_KEY"], int(n))
        return 0
    pairs = ((args.asks, "--asks"), (args.sequential, "--sequential"), (args.flood, "--flood"))
    for pair, name in pairs:
        if not 0 < pair[0] < pair[1]:
            parser.error(f"{name} takes two counts, the smaller first (got {pair[0]} {pair[1]})")
    if shutil.which("valgrind") is None:
        parser.error("needs valgrind on PATH (Debian: apt install valgrind)")
    key = secrets.token_urlsafe(16)
    try:
        if args.only in (None, "asks", "sequential"):
            lean = servers.start_lean(key)
        if args.only in (None, "asks"):
            costs = {
                f"{name}, {IN_FLIGHT} in flight": _per_unit("asks", name, lean.url, key, *args.asks)
                for name in _ASKERS
            }
            names = list(costs)
            shown = [(names[0], names[1]), (names[2], names[1]), (names[0], names[2])]
            _report("asks (lean server)", "ask", costs, shown)
        if args.only in (None, "sequential"):
            costs = {
                f"{name}, one at a time": _per_unit(
                    "sequential", name, lean.url, key, *args.sequential
                )
                for name in _ASKERS
            }
            names = list(costs)
            _report("sequential asks (lean server)", "ask", costs, [(names[0], names[1])])
        if args.only in (None, "flood"):
            flood = servers.start_flood()
            costs = {
                name: _per_unit("flood", name, flood.url, key, *args.flood) for name in _FLOODS
            }
            ratios = [("service.messages", "raw aiohttp"), ("store", "raw aiohttp")]
            _report("flood (213-byte response frames)", "message", costs, ratios)
    finally:
        servers.stop_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
