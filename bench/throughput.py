"""Sections a and b: the per-message and the per-ask paths, beside baselines.

a ``flood``  messages/s of N small response frames: the store, service.messages,
             and baselines (raw aiohttp, raw + codec.decode, aiohttp + json.loads,
             websockets + json.loads, picows).
b ``asks``   sequential asks (p50/p99 latency, asks/s) and 100 in flight (asks/s)
             against a lean server and the reference server; service.ask vs a naive
             aiohttp client; a raw TCP line echo as the floor.
"""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import baselines, ceiling, library, servers, traffic
from .askruns import Asker
from .rounds import Run, log, rotated, rounds
from .stats import ratio, summarize

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["asks", "flood"]

Flood = Callable[[str, int, str], Awaitable[float]]

# -- a: inbound flood --------------------------------------------------------------------


async def flood(suite: Suite) -> dict[str, Any]:
    p = suite.params
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
    base = suite.flood_url()
    warm = min(p.messages, 2_000)
    for run in variants.values():
        await run(f"{base}?n={warm}", warm, suite.api_key)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(p.rounds):
        for name in rotated(list(variants), r):
            gc.collect()
            elapsed = await variants[name](f"{base}?n={p.messages}", p.messages, suite.api_key)
            samples[name].append(p.messages / elapsed)
            log(f"a round {r + 1}/{p.rounds}: {name}: {p.messages / elapsed:,.0f} msg/s")
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


# -- b: asks ----------------------------------------------------------------------------


async def asks(suite: Suite) -> dict[str, Any]:
    p = suite.params
    # The targets compare clients, so they run against a lean server that answers
    # at once (as a fast native server would); the reference server, which does
    # much more per ask, is measured too, for information ("@ reference").
    lean = servers.start_lean(suite.api_key)
    nexus = servers.start_nexus(suite.api_key)
    echo = servers.start_echo()
    try:
        key = suite.api_key
        lean_url, ref_url = lean.url, nexus.url
        clients: dict[str, Asker] = {
            "service.ask": lambda: library.library_asker(lean_url, key),
            "naive aiohttp": lambda: baselines.naive_asker(lean_url, key),
        }
        floor: Asker = lambda: baselines.echo_line(echo.url)  # noqa: E731
        runs: list[tuple[str, Run]] = []
        for name, client in clients.items():
            runs.append((f"{name} sequential", suite._sequential_run(client, lean)))
            runs.append((f"{name} {p.concurrency} in flight", suite._inflight_run(client, lean)))
        # Anchors, sequential only: the fastest client we can write, and the service
        # on the prototype picows transport.
        anchors: dict[str, Asker] = {
            "picows + msgspec": lambda: baselines.picows_asker(lean_url, key),
            "service.ask (picows transport)": lambda: library.library_asker(
                lean_url, key, "picows"
            ),
        }
        for name, client in anchors.items():
            runs.append((f"{name} sequential", suite._sequential_run(client, lean)))
        # The ceiling for asks in flight: a client that keeps none of the promises.
        ceiling_client: Asker = lambda: ceiling.ceiling_asker(lean_url, key)  # noqa: E731
        runs.append(
            (f"ceiling {p.concurrency} in flight", suite._inflight_run(ceiling_client, lean))
        )
        reference: dict[str, Asker] = {
            "service.ask": lambda: library.library_asker(ref_url, key),
            "naive aiohttp": lambda: baselines.naive_asker(ref_url, key),
        }
        for name, client in reference.items():
            runs.append(
                (
                    f"{name} {p.concurrency} in flight @ reference",
                    suite._inflight_run(client, nexus),
                )
            )
        runs.append(("raw TCP echo sequential", suite._sequential_run(floor, echo)))
        variants = await rounds("b", p.rounds, runs)
    finally:
        echo.stop()
        nexus.stop()
        lean.stop()

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
            f"{c} in flight: service / ceiling": ratio(
                med(f"service.ask {c} in flight", "asks/s"),
                med(f"ceiling {c} in flight", "asks/s"),
            ),
            f"{c} in flight: ceiling / naive": ratio(
                med(f"ceiling {c} in flight", "asks/s"),
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
