"""Hostile cases for the asks one read answers being settled together (``settle_all``),
for asks timed by ``time.monotonic`` on asyncio's own loops, and for a ``rate_limited``
said again for one ask. Each against a real loopback server."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

from nexus_reactive import (
    AskRequest,
    AskResponse,
    RequestTimeout,
    ServerError,
    Telemetry,
    WebSocketService,
)
from nexus_reactive.testing import NexusServer

from .conftest import client_config
from .test_receive_batches import burst_after_asks, pushes, response
from .waiting import EVENTUALLY, wait_for


def error(message_id: str) -> bytes:
    payload = {"code": "bad_request", "message": "no"}
    return json.dumps({"type": "error", "id": message_id, "payload": payload}).encode()


async def _answer(request: AskRequest) -> AskResponse:
    return AskResponse(answer=f"re: {request.query}")


def test_a_loop_whose_clock_is_set_on_the_loop_itself_times_the_asks() -> None:
    # A loop of asyncio's own class whose time() is replaced on the instance (as
    # virtual-clock test tools do): its clock is not time.monotonic, and the asks'
    # deadlines must follow it (here an hour ahead: not timed out at once).
    async def run() -> list[Any]:
        async with NexusServer(engine=_answer) as server:
            config = server.config(request_timeout=30.0)
            async with WebSocketService(config) as service:
                await service.connect()
                tasks = [asyncio.ensure_future(service.ask(q)) for q in ("one", "two")]
                return await asyncio.gather(*tasks, return_exceptions=True)

    loop = asyncio.SelectorEventLoop()
    own = loop.time
    loop.time = lambda: own() + 3600.0  # type: ignore[method-assign]
    try:
        outcomes = loop.run_until_complete(asyncio.wait_for(run(), EVENTUALLY))
    finally:
        loop.close()
    assert not any(isinstance(o, RequestTimeout) for o in outcomes), outcomes
    assert [o.answer for o in outcomes] == ["re: one", "re: two"]


class _RaisesOnEnd(SpanProcessor):
    """A span processor that raises once, when the ``nth`` span ends (an exporter
    hook that fails: OpenTelemetry's SDK passes it on to whoever ended the span)."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.ended = 0

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        if self.ended == self.nth:
            raise RuntimeError("the span processor failed")


async def test_a_meter_that_raises_mid_read_leaves_no_answered_ask_waiting(
    aiohttp_server: Any,
) -> None:
    # One read answers two asks; the meter raises when told of the second answer (the
    # connection fails and reconnects). Each ask was taken out of the table as its
    # answer was decoded: neither may be left waiting, untimed, for a later read.
    url = await burst_after_asks(
        aiohttp_server,
        2,
        lambda ids: [
            response("start"),  # (a connection's first frame is handled on its own)
            response(ids[0], "first"),
            response(ids[1], "second"),
            response("end"),
        ],
    )
    provider = TracerProvider()
    provider.add_span_processor(_RaisesOnEnd(2))
    config = client_config(url, request_timeout=30.0, telemetry=Telemetry(provider))
    async with WebSocketService(config) as service:
        failures: list[bool] = []  # for each failure reported: was the first ask done?
        service.errors.subscribe(lambda _: failures.append(tasks[0].done()))
        tasks = [asyncio.ensure_future(service.ask(q)) for q in ("a", "b")]
        _, waiting = await asyncio.wait(tasks, timeout=EVENTUALLY)
        for task in waiting:
            task.cancel()
        # (the failure told, and connected again: close() then ends the new connection;
        # a close() while the failed one is torn down: test_transport_factory.py)
        await wait_for(lambda: bool(failures) and service.state.value.connected)
    # The first was answered before the meter raised; the second's answer came too.
    # (settled as the read failed, not by a later read: done when the failure is told)
    assert failures[0], "the ask answered before the meter raised waits"
    assert not tasks[0].cancelled(), "the ask answered before the meter raised waits"
    assert not tasks[1].cancelled(), "the ask whose meter raised waits"
    assert [t.result().answer for t in tasks] == ["first", "second"]


async def test_a_subscriber_cancels_an_ask_answered_in_the_same_run_as_others(
    aiohttp_server: Any,
) -> None:
    # One read: a push, then the answers to three asks. The push's subscriber cancels
    # the second ask's task; the others get their answers, the cancelled one ends
    # cancelled, its answer is delivered once, and nothing is left pending or timed.
    url = await burst_after_asks(
        aiohttp_server,
        3,
        lambda ids: [
            response("push-first"),
            *pushes(0, 2),
            response(ids[0], "first"),
            response(ids[1], "second"),
            response(ids[2], "third"),
            response("end"),
        ],
    )
    seen: list[str] = []
    async with WebSocketService(client_config(url, request_timeout=30.0)) as service:
        tasks = [asyncio.ensure_future(service.ask(q)) for q in ("a", "b", "c")]

        def on_next(message: Any) -> None:
            seen.append(message.payload.answer)
            if message.id == "push-0":
                tasks[1].cancel()

        service.messages.subscribe(on_next)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await wait_for(lambda: len(seen) == 7)
        tracker = service._asks
        assert len(tracker) == 0 and len(tracker._deadlines) == 0
    assert outcomes[0].answer == "first" and outcomes[2].answer == "third"
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert seen == ["pushed"] * 3 + ["first", "second", "third", "pushed"]


async def test_answers_and_errors_in_one_read_with_a_meter_count_each_ask_once(
    aiohttp_server: Any,
) -> None:
    # metrics=True: a read of answers split into runs by an error answer and a repeat;
    # the meter counts each ask answered once, the repeat once, and nothing pending.
    url = await burst_after_asks(
        aiohttp_server,
        4,
        lambda ids: [
            response("start"),
            response(ids[1], "second"),
            response(ids[0], "first"),
            error(ids[2]),
            response(ids[0], "first, again"),
            response(ids[3], "fourth"),
            response("end"),
        ],
    )
    config = client_config(url, request_timeout=30.0, metrics=True)
    async with WebSocketService(config) as service:
        tasks = [asyncio.ensure_future(service.ask(q)) for q in "abcd"]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        counts = service.metrics.value
        assert len(service._asks) == 0 and len(service._asks._deadlines) == 0
    assert [o.answer for i, o in enumerate(outcomes) if i != 2] == ["first", "second", "fourth"]
    assert counts.asks_answered == 3 and counts.asks_failed == 1  # the error answer
    assert counts.duplicates_dropped == 1


async def test_a_meter_that_raises_on_an_error_answer_still_fails_the_ask(
    aiohttp_server: Any,
) -> None:
    # An error answer goes frame by frame (_on_reply): the ask is taken out of the
    # table, then the meter is told. If the meter raises, the ask must still end (with
    # the server's error), not wait for good: it is in no table, and untimed.
    url = await burst_after_asks(aiohttp_server, 1, lambda ids: [response("start"), error(ids[0])])
    provider = TracerProvider()
    provider.add_span_processor(_RaisesOnEnd(1))
    config = client_config(url, request_timeout=None, telemetry=Telemetry(provider))
    async with WebSocketService(config) as service:
        with pytest.raises(ServerError):
            await asyncio.wait_for(service.ask("refused"), EVENTUALLY)
        await wait_for(lambda: service.state.value.connected)
