"""OpenTelemetry for the client and the reference server (the ``otel`` extra).

Imported only by a service or server configured with ``telemetry=`` (see
:mod:`nexus_reactive.telemetry`); nothing else in the library imports OpenTelemetry.

- :class:`TelemetryMeter` extends the service's :class:`~nexus_reactive.metrics.Meter`:
  a span per ask (``nexus ask``, kind CLIENT) from the moment it is made to its final
  answer, with its id, outcome and attempts, its status an error when it fails; the
  W3C trace context (``traceparent``, ``tracestate``) of that span on the ask's frame;
  and the histograms of ask latency and ping round trips.
- The counters and gauges are observable instruments, read from the services' counts
  when the SDK collects: nothing is recorded per frame. Services sharing a meter
  provider are summed (a closed service's counts stay in the sums).
- :func:`server_span` is the reference server's span for an ask that carries trace
  context: a child of the client's span (kind SERVER).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import msgspec
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import __version__, codec
from .core.metrics import ASK_OUTCOMES, Counters
from .messages import AskMessage, ErrorMessage
from .metrics import Meter
from .telemetry import Telemetry, check_telemetry

if TYPE_CHECKING:
    from .config import WebSocketConfig
    from .core import ClientCore, Pending
    from .waiter import Waiter

__all__ = ["SCOPE", "SPAN_NAME", "TelemetryMeter", "server_span", "server_tracer"]

#: The instrumentation scope of every tracer and meter of the library.
SCOPE = "nexus_reactive"
#: The name of the client's span for an ask, and of the server's.
SPAN_NAME = "nexus ask"
#: Histogram buckets for latencies, in seconds (0.5 ms to 30 s).
LATENCY_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
LATENCY_BUCKETS += (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_PROPAGATOR = TraceContextTextMapPropagator()
# Outcomes whose span status is an error (a cancelled or closed ask is not a failure).
_FAILED = frozenset({"server_error", "timed_out", "failed"})
# The attributes of a latency sample, built once per outcome.
_OUTCOME = {outcome: {"nexus.ask.outcome": outcome} for outcome in ASK_OUTCOMES}


class TelemetryMeter(Meter):
    """A :class:`Meter` that also traces each ask and feeds the OpenTelemetry instruments."""

    def __init__(
        self,
        config: WebSocketConfig,
        core: ClientCore[Waiter],
        loop: Callable[[], asyncio.AbstractEventLoop | None],
    ) -> None:
        super().__init__(config, core, loop)
        settings = check_telemetry(config.telemetry) or Telemetry()
        self._tracer = trace.get_tracer(SCOPE, __version__, settings.tracer_provider)
        self._propagate = settings.propagate
        self._instruments = _instruments_for(settings.meter_provider)
        self._instruments.join(self)

    # -- spans ----------------------------------------------------------------------------

    def made(self, ask_id: str, frame: bytes, waiter: Waiter) -> bytes:
        frame = super().made(ask_id, frame, waiter)
        span = self._tracer.start_span(
            SPAN_NAME, kind=SpanKind.CLIENT, attributes={"nexus.ask.id": ask_id}
        )
        waiter.span = span
        context = span.get_span_context()
        if self._propagate and context.is_valid:
            # The W3C header of the span (what the propagator writes, at a tenth the cost).
            traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-"
            traceparent += f"{context.trace_flags:02x}"
            frame = _with_trace_context(frame, traceparent, context.trace_state.to_header())
        return frame

    def refused(self, ask_id: str, waiter: Waiter, error: Exception) -> None:
        super().refused(ask_id, waiter, error)
        span, waiter.span = waiter.span, None
        span.set_attribute("nexus.ask.outcome", "refused")
        span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end()

    def _ended(
        self,
        ask_id: str,
        entry: Pending[Waiter],
        outcome: str,
        latency: float | None,
        detail: Any,
    ) -> None:
        super()._ended(ask_id, entry, outcome, latency, detail)
        if latency is not None:
            self._instruments.ask_duration.record(latency, _OUTCOME[outcome])
        waiter = entry.waiter
        span = None if waiter is None else getattr(waiter, "span", None)
        if waiter is None or span is None:
            return  # an ask of a previous life (persist=): no span
        waiter.span = None
        span.set_attribute("nexus.ask.outcome", outcome)
        span.set_attribute("nexus.ask.attempts", entry.sends)
        if isinstance(detail, ErrorMessage):
            span.set_attribute("nexus.error.code", detail.payload.code)
            span.set_status(Status(StatusCode.ERROR, f"server error {detail.payload.code!r}"))
        elif outcome in _FAILED:
            span.set_status(Status(StatusCode.ERROR, str(detail) if detail else outcome))
        span.end()

    # -- metrics --------------------------------------------------------------------------

    def rtt(self, seconds: float) -> None:
        super().rtt(seconds)
        self._instruments.ping_rtt.record(seconds)

    def close(self) -> None:
        super().close()
        self._instruments.leave(self)


def _with_trace_context(frame: bytes, traceparent: str, tracestate: str) -> bytes:
    """The ask's frame with the span's trace context, unless it carries one already
    (an application that sent its own ``AskMessage(traceparent=...)``)."""
    message = codec.decode(frame)
    if not isinstance(message, AskMessage) or message.traceparent:
        return frame
    return codec.encode(
        msgspec.structs.replace(message, traceparent=traceparent, tracestate=tracestate or None)
    )


# -- the instruments, one set per meter provider ----------------------------------------------


class _Instruments:
    """The observable instruments of one meter provider, summed over its services."""

    def __init__(self, provider: Any) -> None:
        meter = otel_metrics.get_meter(SCOPE, __version__, provider)
        self._lock = threading.Lock()  # the SDK collects on its own thread
        self._live: weakref.WeakSet[Meter] = weakref.WeakSet()
        self._retired = Counters(window=1)
        counter = meter.create_observable_counter
        counter("nexus.client.frames", [self._frames], "{frame}", "WebSocket text frames")
        counter("nexus.client.bytes", [self._bytes], "By", "bytes of the frames' payloads")
        counter("nexus.client.connects", [self._connects], "{connection}", "connections opened")
        counter(
            "nexus.client.reconnects", [self._reconnects], "{reconnect}", "retried losses by cause"
        )
        counter("nexus.client.asks", [self._asks], "{ask}", "asks made")
        counter("nexus.client.asks.ended", [self._ended], "{ask}", "asks ended, by outcome")
        counter("nexus.client.duplicates", [self._duplicates], "{message}", "repeats dropped")
        gauge = meter.create_observable_gauge
        gauge("nexus.client.outbox.depth", [self._outbox], "{message}", "messages waiting")
        gauge("nexus.client.asks.pending", [self._pending], "{ask}", "asks waiting")
        histogram = meter.create_histogram
        self.ask_duration = histogram(
            "nexus.client.ask.duration",
            "s",
            "from an ask being made to its answer",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )
        self.ping_rtt = histogram(
            "nexus.client.ping.rtt",
            "s",
            "WebSocket ping to pong",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS,
        )

    def join(self, meter: Meter) -> None:
        with self._lock:
            self._live.add(meter)

    def leave(self, meter: Meter) -> None:
        """A service closed: its counts stay in the sums (counters never go down)."""
        with self._lock:
            if meter not in self._live:
                return
            self._live.discard(meter)
            _add(self._retired, meter.counts)

    def _counts(self) -> list[Counters]:
        with self._lock:
            return [self._retired, *(m.counts for m in self._live)]

    def _meters(self) -> list[Meter]:
        with self._lock:
            return list(self._live)

    def _sum(self, read: Callable[[Counters], int]) -> int:
        return sum(read(c) for c in self._counts())

    def _frames(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._sum(lambda c: c.frames_in), {"network.io.direction": "receive"})
        yield Observation(self._sum(lambda c: c.frames_out), {"network.io.direction": "transmit"})

    def _bytes(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._sum(lambda c: c.bytes_in), {"network.io.direction": "receive"})
        yield Observation(self._sum(lambda c: c.bytes_out), {"network.io.direction": "transmit"})

    def _connects(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._sum(lambda c: c.connects))

    def _reconnects(self, _options: CallbackOptions) -> Iterable[Observation]:
        causes: dict[str, int] = {}
        for counts in self._counts():
            for cause, n in dict(counts.reconnects).items():
                causes[cause] = causes.get(cause, 0) + n
        for cause, n in sorted(causes.items()):
            yield Observation(n, {"nexus.reconnect.cause": cause})

    def _asks(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._sum(lambda c: c.asks))

    def _ended(self, _options: CallbackOptions) -> Iterable[Observation]:
        for outcome, read in _ENDED_BY_OUTCOME.items():
            yield Observation(self._sum(read), {"nexus.ask.outcome": outcome})

    def _duplicates(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._sum(lambda c: c.duplicates_dropped))

    def _outbox(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(m.depths()[0] for m in self._meters()))

    def _pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(m.depths()[1] for m in self._meters()))


_ENDED_BY_OUTCOME: dict[str, Callable[[Counters], int]] = {
    "answered": lambda c: c.asks_answered,
    "failed": lambda c: c.asks_failed,
    "timed_out": lambda c: c.asks_timed_out,
    "cancelled": lambda c: c.asks_cancelled,
}


def _add(total: Counters, counts: Counters) -> None:
    for name in (
        "frames_in",
        "frames_out",
        "bytes_in",
        "bytes_out",
        "connects",
        "asks",
        "asks_answered",
        "asks_failed",
        "asks_timed_out",
        "asks_cancelled",
        "duplicates_dropped",
    ):
        setattr(total, name, getattr(total, name) + getattr(counts, name))
    for cause, n in counts.reconnects.items():
        total.reconnects[cause] = total.reconnects.get(cause, 0) + n


_registry: weakref.WeakKeyDictionary[Any, _Instruments] = weakref.WeakKeyDictionary()
_global: dict[str, _Instruments] = {}
_registry_lock = threading.Lock()


def _instruments_for(provider: Any) -> _Instruments:
    """The instruments of ``provider`` (``None``: the global one), made once per provider:
    an SDK keeps the first instrument of a name, so each service must not make its own."""
    with _registry_lock:
        if provider is None:
            if "global" not in _global:
                _global["global"] = _Instruments(None)
            return _global["global"]
        try:
            found = _registry.get(provider)
        except TypeError:  # a provider that takes no weak reference: kept for good
            key = f"id:{id(provider)}"
            if key not in _global:
                _global[key] = _Instruments(provider)
            return _global[key]
        if found is None:
            found = _registry[provider] = _Instruments(provider)
        return found


# -- the reference server -------------------------------------------------------------------


def server_tracer(telemetry: Telemetry | None) -> trace.Tracer:
    """The server's tracer: ``telemetry``'s provider, else the global one."""
    provider = None if telemetry is None else telemetry.tracer_provider
    return trace.get_tracer(SCOPE, __version__, provider)


@contextmanager
def server_span(tracer: trace.Tracer, ask: AskMessage) -> Iterator[trace.Span]:
    """A SERVER span for answering ``ask``, the child of the span its trace context names
    (a malformed ``traceparent`` gives a span of its own trace)."""
    carrier = {"traceparent": ask.traceparent or ""}
    if ask.tracestate:
        carrier["tracestate"] = ask.tracestate
    parent = _PROPAGATOR.extract(carrier)
    with tracer.start_as_current_span(
        SPAN_NAME, context=parent, kind=SpanKind.SERVER, attributes={"nexus.ask.id": ask.id}
    ) as span:
        yield span
