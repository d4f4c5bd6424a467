"""Section j, ``observability``: what counting costs on the hot paths.

The same two paths as sections a and b, the service's flood (``service.messages``, one
counting subscriber) and sequential ``service.ask`` against the lean server, each with:

- ``metrics off``: the default configuration (no meter: the paths of sections a and b);
- ``metrics on``: ``WebSocketConfig(metrics=True)``, every frame, byte, ask and
  latency counted, with one ``service.metrics`` subscriber;
- ``otel on``: ``telemetry=`` with the OpenTelemetry SDK: a span per ask exported in
  batches (to an exporter that drops them), the histograms recorded, and the
  observable instruments collected by an in-memory reader at the end.

Interleaved round by round, like every section; the ratios are on / off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from nexus_reactive import Telemetry, WebSocketConfig, WebSocketService
from nexus_reactive.messages import Message

from . import servers, traffic
from .askruns import latency
from .baselines import AskFn
from .library import TIMEOUT
from .rounds import log, rounds
from .stats import ratio

if TYPE_CHECKING:
    from .sections import Suite

__all__ = ["observability"]

Settings = Callable[[], dict[str, Any]]


def _telemetry() -> Telemetry:
    """The SDK as an application runs it: spans batched to an exporter (here one that
    drops them), metrics read on demand."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)


def _shutdown(settings: dict[str, Any]) -> None:
    telemetry = settings.get("telemetry")
    if isinstance(telemetry, Telemetry):
        telemetry.meter_provider.force_flush()  # a collection: the observable instruments
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()


VARIANTS: dict[str, Settings] = {
    "metrics off": dict,
    "metrics on": lambda: {"metrics": True},
    "otel on": lambda: {"telemetry": _telemetry()},
}


async def _flood(url: str, n: int, api_key: str, settings: dict[str, Any]) -> float:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    count = 0

    def on_next(message: Message) -> None:
        nonlocal count
        count += 1
        if message.id == traffic.SENTINEL_ID and not done.done():
            done.set_result(None)

    t0 = time.perf_counter()
    service = WebSocketService(WebSocketConfig(url=url, api_key=api_key, **settings))
    service.messages.subscribe(on_next)
    if settings:
        service.metrics.subscribe(lambda m: None)  # an observer, as an application has
    try:
        await service.connect()
        await asyncio.wait_for(done, TIMEOUT)
        elapsed = time.perf_counter() - t0
        if settings and service.metrics.value.frames_in != n + 1:
            raise RuntimeError(f"metrics counted {service.metrics.value.frames_in} frames")
    finally:
        await service.close()
        _shutdown(settings)
    if count != n + 1:
        raise RuntimeError(f"received {count} messages, expected {n + 1}")
    return elapsed


@asynccontextmanager
async def _asker(url: str, api_key: str, settings: dict[str, Any]) -> AsyncIterator[AskFn]:
    config = WebSocketConfig(url=url, api_key=api_key, **settings)
    try:
        async with WebSocketService(config) as service:
            if settings:
                service.metrics.subscribe(lambda m: None)

            async def ask() -> object:
                return await service.ask(traffic.QUERY)

            yield ask
    finally:
        _shutdown(settings)


async def observability(suite: Suite) -> dict[str, Any]:
    p = suite.params
    lean = servers.start_lean(suite.api_key)
    try:
        base, key, n = suite.flood_url(), suite.api_key, p.messages
        runs = []
        for name, settings in VARIANTS.items():

            async def flood(settings: Settings = settings) -> dict[str, float]:
                return {"msg/s": n / await _flood(f"{base}?n={n}", n, key, settings())}

            async def asks(settings: Settings = settings) -> dict[str, float]:
                async with _asker(lean.url, key, settings()) as ask:
                    for _ in range(p.warmup_asks):
                        await ask()
                    return await latency(ask, p.sequential_asks)

            runs.append((f"flood, {name}", flood))
            runs.append((f"sequential ask, {name}", asks))
        warm = min(n, 2_000)
        for settings in VARIANTS.values():  # warm-up, unrecorded
            await _flood(f"{base}?n={warm}", warm, key, settings())
        log("l: flood and sequential asks with metrics off, on, and OpenTelemetry on")
        variants = await rounds("l", p.rounds, runs)
    finally:
        lean.stop()

    def med(name: str, metric: str) -> float:
        return float(variants[name][metric]["median"])

    flood_off = med("flood, metrics off", "msg/s")
    ask_off = med("sequential ask, metrics off", "p50 us")
    return {
        "unit": "msg/s; latency in microseconds",
        "messages": n,
        "sequential_asks": p.sequential_asks,
        "variants": variants,
        "ratios": {
            "flood msg/s: metrics on / off": ratio(med("flood, metrics on", "msg/s"), flood_off),
            "flood msg/s: otel on / off": ratio(med("flood, otel on", "msg/s"), flood_off),
            "sequential p50: metrics on / off": ratio(
                med("sequential ask, metrics on", "p50 us"), ask_off
            ),
            "sequential p50: otel on / off": ratio(
                med("sequential ask, otel on", "p50 us"), ask_off
            ),
        },
    }
