"""OpenTelemetry (``telemetry=``, the ``otel`` extra), checked with the SDK's in-memory
exporters over real sockets: a span per ask, its W3C trace context carried on the ask
frame to the reference server, whose span joins the client's trace; the metric
instruments; and nothing of OpenTelemetry loaded or done when telemetry is off."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from nexus_reactive import (
    AskMessage,
    AskRequest,
    AskResponse,
    ConfigError,
    ProtocolError,
    RequestTimeout,
    ServerError,
    Telemetry,
    WebSocketConfig,
    WebSocketService,
    new_id,
)
from nexus_reactive.testing import FaultProxy, NexusServer

from .conftest import Scripted, fail_only_fail, response_frame
from .waiting import wait_for, wait_for_state


@dataclass
class Side:
    """One side's OpenTelemetry: its providers, its finished spans, its metrics."""

    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    telemetry: Telemetry

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> dict[tuple[tuple[str, Any], ...], Any]:
        """The data points of one instrument, by their attributes."""
        found: dict[tuple[tuple[str, Any], ...], Any] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            found[tuple(sorted(point.attributes.items()))] = point
        return found

    def value(self, name: str, **attributes: Any) -> Any:
        point = self.points(name).get(tuple(sorted(attributes.items())))
        return None if point is None else point.value


def _side() -> Side:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return Side(spans, reader, Telemetry(tracer_provider, meter_provider))


@pytest.fixture
def client() -> Iterator[Side]:
    side = _side()
    yield side
    side.telemetry.tracer_provider.shutdown()
    side.telemetry.meter_provider.shutdown()


@pytest.fixture
def server_side() -> Iterator[Side]:
    side = _side()
    yield side
    side.telemetry.tracer_provider.shutdown()
    side.telemetry.meter_provider.shutdown()


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def _kind(spans: list[ReadableSpan], kind: SpanKind) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is kind]


async def test_each_ask_is_a_span_and_the_servers_span_joins_its_trace(
    client: Side, server_side: Side
) -> None:
    async with (
        NexusServer(telemetry=server_side.telemetry) as server,
        WebSocketService(server.config(telemetry=client.telemetry)) as service,
    ):
        answers = [await service.ask(f"question {i}") for i in range(3)]
    assert all(a.answer for a in answers)
    mine = _kind(client.finished(), SpanKind.CLIENT)
    theirs = _kind(server_side.finished(), SpanKind.SERVER)
    assert len(mine) == len(theirs) == 3
    by_id = {s.attributes["nexus.ask.id"]: s for s in theirs}
    for span in mine:
        assert span.name == "nexus ask"
        assert span.attributes["nexus.ask.outcome"] == "answered"
        assert span.attributes["nexus.ask.attempts"] == 1
        assert span.status.status_code is StatusCode.UNSET
        joined = by_id[span.attributes["nexus.ask.id"]]
        assert joined.context.trace_id == span.context.trace_id  # one trace, both sides
        assert joined.parent is not None and joined.parent.span_id == span.context.span_id
        assert joined.attributes["nexus.ask.outcome"] == "answered"
    assert len({s.context.trace_id for s in mine}) == 3  # each ask its own trace


async def test_an_ask_inside_an_application_span_is_its_child(
    client: Side, server_side: Side
) -> None:
    tracer = client.telemetry.tracer_provider.get_tracer("app")
    async with (
        NexusServer(telemetry=server_side.telemetry) as server,
        WebSocketService(server.config(telemetry=client.telemetry)) as service,
    ):
        with tracer.start_as_current_span("checkout") as outer:
            await service.ask("inside")
            service.send_query("also inside")
            await wait_for(lambda: len(_kind(client.finished(), SpanKind.CLIENT)) == 2)
    trace_id = outer.get_span_context().trace_id
    for span in _kind(client.finished(), SpanKind.CLIENT):
        assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    assert {s.context.trace_id for s in server_side.finished()} == {trace_id}


async def test_an_ask_sent_again_after_a_cut_counts_two_attempts_in_one_trace(
    client: Side, server_side: Side
) -> None:
    release = asyncio.Event()

    async def slow(request: AskRequest) -> AskResponse:
        await release.wait()
        return AskResponse(answer=f"at last: {request.query}")

    async with (
        NexusServer(engine=slow, telemetry=server_side.telemetry) as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        config = server.config(url=proxy.url(), telemetry=client.telemetry)
        async with WebSocketService(config) as service:
            asking = asyncio.create_task(service.ask("slow one"))
            await wait_for(lambda: server.stats.asks_received == 1)
            await proxy.cut()
            await wait_for(lambda: server.stats.asks_received == 2)  # sent again, same id
            release.set()
            assert (await asking).answer == "at last: slow one"
            assert service.metrics.value.reconnects == {"connection_lost": 1}
    (span,) = _kind(client.finished(), SpanKind.CLIENT)
    assert span.attributes["nexus.ask.attempts"] == 2
    server_spans = _kind(server_side.finished(), SpanKind.SERVER)
    assert len(server_spans) == 2  # one per attempt, both in the client's trace
    assert {s.context.trace_id for s in server_spans} == {span.context.trace_id}
    assert {s.parent.span_id for s in server_spans if s.parent} == {span.context.span_id}


async def test_failed_asks_end_their_spans_with_an_error_status(
    scripted: Any, client: Side
) -> None:
    server = await scripted(fail_only_fail)
    async with WebSocketService(server.config(telemetry=client.telemetry)) as service:
        with pytest.raises(ServerError):
            await service.ask("fail")
        with pytest.raises(RequestTimeout):
            await service.ask("silence", timeout=0.05)
        task = asyncio.create_task(service.ask("cancelled"))
        await wait_for(lambda: len(server.received) == 3)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        service.send_query("unanswered at close")
        await wait_for(lambda: len(server.received) == 4)
    spans = {s.attributes["nexus.ask.outcome"]: s for s in client.finished()}
    assert set(spans) == {"server_error", "timed_out", "cancelled", "closed"}
    assert spans["server_error"].status.status_code is StatusCode.ERROR
    assert spans["server_error"].attributes["nexus.error.code"] == "internal"
    assert spans["timed_out"].status.status_code is StatusCode.ERROR
    assert "request_timeout" in (spans["timed_out"].status.description or "")
    assert spans["cancelled"].status.status_code is StatusCode.UNSET
    assert spans["closed"].status.status_code is StatusCode.UNSET
    # Every ask frame carried its span's context, as W3C traceparent.
    for frame in server.received:
        version, trace_id, span_id, flags = frame["traceparent"].split("-")
        assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
        assert int(flags, 16) & 1  # sampled


async def test_the_metric_instruments_read_the_counters(scripted: Any, client: Side) -> None:
    async def twice(ws: web.WebSocketResponse, conn: Scripted) -> None:
        while (frame := await conn.next_frame(ws)) is not None:
            for _ in range(2):
                await ws.send_str(response_frame(frame["id"], "twice"))

    server = await scripted(twice)
    config = server.config(telemetry=client.telemetry)
    async with WebSocketService(config) as first, WebSocketService(config) as second:
        for service in (first, second):
            for i in range(3):
                await service.ask(f"q{i}")
        await wait_for(lambda: second.metrics.value.frames_in == 6)
        assert client.value("nexus.client.asks") == 6
        assert client.value("nexus.client.frames", **{"network.io.direction": "receive"}) == 12
        assert client.value("nexus.client.duplicates") == 6
        assert client.value("nexus.client.connects") == 2
        ended = client.value("nexus.client.asks.ended", **{"nexus.ask.outcome": "answered"})
        assert ended == 6
        assert client.value("nexus.client.outbox.depth") == 0
        (duration,) = client.points("nexus.client.ask.duration").values()
        assert duration.count == 6 and duration.sum > 0
        await first.close()
        # A closed service's counts stay in the sums: a counter never goes down.
        assert client.value("nexus.client.asks") == 6


async def test_reconnect_causes_are_an_attribute_of_one_counter(client: Side) -> None:
    async with (
        NexusServer() as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        config = server.config(url=proxy.url(), telemetry=client.telemetry)
        async with WebSocketService(config) as service:
            await proxy.cut()
            await wait_for(lambda: service.metrics.value.reconnects_total == 1)
            await wait_for_state(service, "connected")
            await proxy.close_with(1012)
            await wait_for(lambda: service.metrics.value.reconnects_total == 2)
            await wait_for_state(service, "connected")
            cause = "nexus.reconnect.cause"
            assert client.value("nexus.client.reconnects", **{cause: "connection_lost"}) == 1
            assert client.value("nexus.client.reconnects", **{cause: "server_closed"}) == 1


async def test_without_propagation_the_server_starts_no_span(
    client: Side, server_side: Side
) -> None:
    quiet = Telemetry(client.telemetry.tracer_provider, client.telemetry.meter_provider, False)
    async with (
        NexusServer(telemetry=server_side.telemetry) as server,
        WebSocketService(server.config(telemetry=quiet)) as service,
    ):
        await service.ask("untraced on the server")
    assert len(client.finished()) == 1 and server_side.finished() == []


async def test_an_applications_own_trace_context_is_kept(client: Side, server_side: Side) -> None:
    theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with (
        NexusServer(telemetry=server_side.telemetry) as server,
        WebSocketService(server.config(telemetry=client.telemetry)) as service,
    ):
        ask_id = new_id()
        service.send(AskMessage(id=ask_id, payload=AskRequest("mine"), traceparent=theirs))
        await wait_for(lambda: len(server_side.finished()) == 1)
        # Too long a trace context is refused before anything is sent.
        with pytest.raises(ProtocolError, match=r"traceparent"):
            service.send(AskMessage(id=new_id(), payload=AskRequest("x"), traceparent="0" * 200))
    (span,) = server_side.finished()
    assert _hex(span.context.trace_id, 32) == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and _hex(span.parent.span_id, 16) == "b7ad6b7169203331"


async def test_a_malformed_traceparent_gives_the_server_a_trace_of_its_own(
    nexus_key: str, server_side: Side
) -> None:
    import aiohttp

    async with (
        NexusServer(api_keys=nexus_key, telemetry=server_side.telemetry) as server,
        aiohttp.ClientSession() as session,
        session.ws_connect(server.url, headers={"x-api-key": nexus_key}) as ws,
    ):
        ask = {"type": "ask", "id": "a1", "payload": {"query": "hi"}, "traceparent": "zz"}
        await ws.send_str(json.dumps(ask))
        reply = await ws.receive()
        assert reply.type is WSMsgType.TEXT and json.loads(reply.data)["type"] == "response"
        too_long = {**ask, "id": "a2", "traceparent": "0" * 200}
        await ws.send_str(json.dumps(too_long))
        refused = json.loads((await ws.receive()).data)
        assert (refused["type"], refused["payload"]["code"]) == ("error", "bad_request")
    (span,) = server_side.finished()
    assert span.parent is None and span.attributes["nexus.ask.id"] == "a1"


async def test_a_server_with_telemetry_off_traces_nothing(client: Side, server_side: Side) -> None:
    async with (
        NexusServer(telemetry=False) as server,
        WebSocketService(server.config(telemetry=client.telemetry)) as service,
    ):
        await service.ask("nobody traces me there")
    assert len(client.finished()) == 1


def test_telemetry_without_opentelemetry_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("opentelemetry", "opentelemetry.trace"):  # as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match=r"pip install 'nexus-reactive\[otel\]'"):
        WebSocketConfig(telemetry=True)
    from nexus_reactive.server import create_app

    with pytest.raises(ConfigError, match=r"create_app\(telemetry=...\)"):
        create_app(api_keys="k", telemetry=True)


def test_nothing_of_opentelemetry_loads_unless_telemetry_is_on() -> None:
    """Metrics on, a server created and an ask frame encoded: OpenTelemetry stays out."""
    code = """
import asyncio, sys
from nexus_reactive import WebSocketConfig, WebSocketService
from nexus_reactive.server import create_app

async def main():
    service = WebSocketService(WebSocketConfig(url="ws://localhost:1", api_key="k", metrics=True))
    service.send_query("queued")
    create_app(api_keys="k")
    await service.close()

asyncio.run(main())
print([m for m in sys.modules if m.startswith("opentelemetry") or m == "nexus_reactive.otel"])
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout


async def test_an_ask_the_pacing_held_back_when_the_connection_was_cut_counts_one_attempt(
    client: Side,
) -> None:
    # rate= paces the writer: it takes the second ask, then waits for a token. The
    # connection is cut during that wait: the frame was never written, so when it goes
    # on the next connection that is its first attempt, as the server sees it.
    received: list[str] = []

    async def engine(request: AskRequest) -> AskResponse:
        received.append(request.query)
        return AskResponse(answer=request.query)

    async with (
        NexusServer(engine=engine) as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        config = server.config(url=proxy.url(), telemetry=client.telemetry, rate=1.0, burst=1)
        async with WebSocketService(config) as service:
            sender = service._connection.sender
            first = asyncio.create_task(service.ask("first"))
            second = asyncio.create_task(service.ask("second"))
            await first
            # The writer holds "second" (taken, on the wire) while it waits for a token.
            await wait_for(
                lambda: (
                    sender._writer_holds
                    and not service.outbox_size
                    and all(e.on_wire for e in service._core.pending._asks.values())
                )
            )
            await proxy.cut()
            assert (await second).answer == "second"
    attempts = {
        s.attributes["nexus.ask.id"]: s.attributes["nexus.ask.attempts"]
        for s in _kind(client.finished(), SpanKind.CLIENT)
    }
    assert len(attempts) == 2
    assert sorted(attempts.values()) == sorted(received.count(q) for q in ("first", "second"))
