"""Section f ``uvloop``: the service's flood and sequential asks on asyncio's loop and
on uvloop's, interleaved, each run in a fresh loop in a worker thread (so both loops
run the same code against the same server processes); the TCP echo floor beside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import baselines, library, servers
from .rounds import Run, rounds
from .stats import ratio

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["uvloop_section"]


def _run_in_loop(kind: str, make: Callable[[], Awaitable[Any]]) -> Any:
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if kind == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
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
        variants = await rounds("f", p.rounds, runs)
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
