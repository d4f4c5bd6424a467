"""The asks one read answers are settled together (``AskTracker.settle_all``), before
anyone hears of the read; and the asks are timed by their loop's own clock. Each case
against a real server: what the same frames mean one by one must not change."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from nexus_reactive import RequestTimeout, ServerError, WebSocketService
from nexus_reactive.testing import NexusServer

from .conftest import client_config
from .faults import wait_for
from .test_receive_batches import burst_after_asks, pushes, response


def error(message_id: str) -> bytes:
    payload = {"code": "bad_request", "message": "no"}
    return json.dumps({"type": "error", "id": message_id, "payload": payload}).encode()


async def test_answers_around_an_error_and_a_malformed_frame_settle_and_untime_each_ask(
    aiohttp_server: Any,
) -> None:
    # One read: answers, a malformed frame, an error answer and a repeat split it into
    # runs; each ask ends once, with its own outcome, and leaves no deadline behind.
    url = await burst_after_asks(
        aiohttp_server,
        4,
        lambda ids: [
            response("start"),  # (a connection's first frame is handled on its own)
            response(ids[1], "second"),
            response(ids[0], "first"),  # two in one run: settled together
            b"{not json",
            *pushes(0, 3),
            response(ids[3], "fourth"),  # one alone
            error(ids[2]),
            response(ids[3], "fourth, again"),  # a repeat: dropped
            response("end"),
        ],
    )
    seen: list[str] = []
    config = client_config(url, request_timeout=30.0)
    async with WebSocketService(config) as service:
        service.messages.subscribe(lambda m: seen.append(m.id))
        tasks = [asyncio.ensure_future(service.ask(q)) for q in ("a", "b", "c", "d")]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        await wait_for(lambda: seen[-1:] == ["end"])
        tracker = service._asks
        assert len(tracker) == 0 and len(tracker._deadlines) == 0
    answers = [o.answer if not isinstance(o, BaseException) else o for o in outcomes]
    assert answers[0] == "first" and answers[1] == "second" and answers[3] == "fourth"
    assert isinstance(answers[2], ServerError) and answers[2].code == "bad_request"
    assert seen.count(seen[0]) == 1 and len(seen) == len(set(seen))  # each once


class _ShiftedLoop(asyncio.SelectorEventLoop):
    """A loop whose clock is not ``time.monotonic``: an hour ahead."""

    def time(self) -> float:
        return super().time() + 3600.0


@pytest.mark.parametrize("timeout", [30.0, 0.3])
def test_asks_are_timed_by_their_loops_own_clock(timeout: float) -> None:
    # With asyncio's own loops the tracker reads time.monotonic directly (a call less
    # per ask); any other loop's time() is its own, and deadlines follow it.
    async def run() -> list[Any]:
        async with NexusServer(engine=_slow_for("slow")) as server:
            config = server.config(request_timeout=timeout)
            async with WebSocketService(config) as service:
                await service.connect()
                tasks = [asyncio.ensure_future(service.ask(q)) for q in ("one", "slow")]
                return await asyncio.gather(*tasks, return_exceptions=True)

    loop = _ShiftedLoop()
    try:
        quick, slow = loop.run_until_complete(asyncio.wait_for(run(), 20.0))
    finally:
        loop.close()
    assert quick.answer == "re: one"  # not timed out at once (an hour early)
    if timeout < 1:
        assert isinstance(slow, RequestTimeout)  # nor never (an hour late)
    else:
        assert slow.answer == "re: slow"


class _Made(asyncio.Future[Any]):
    """The futures :class:`_OwnFutures` makes."""


class _OwnFutures(asyncio.SelectorEventLoop):
    """A loop that makes its own futures (as uvloop and others may)."""

    def create_future(self) -> asyncio.Future[Any]:
        return _Made(loop=self)


def test_a_loop_with_its_own_create_future_makes_the_asks_futures() -> None:
    async def run() -> list[str]:
        async with (
            NexusServer(engine=_slow_for("q")) as server,
            WebSocketService(server.config()) as service,
        ):
            await service.connect()
            tasks = [asyncio.ensure_future(service.ask(f"q{i}")) for i in range(5)]
            await asyncio.sleep(0)  # each task has made its ask
            entries = [service._core.pending.get(i) for i in service._core.pending.lookups()[0]]
            assert len(entries) == 5
            assert all(type(e.waiter.future) is _Made for e in entries)  # type: ignore[union-attr]
            return [a.answer for a in await asyncio.gather(*tasks)]

    loop = _OwnFutures()
    try:
        answers = loop.run_until_complete(asyncio.wait_for(run(), 20.0))
    finally:
        loop.close()
    assert answers == [f"re: q{i}" for i in range(5)]


def _slow_for(prefix: str) -> Any:
    from nexus_reactive.messages import AskRequest, AskResponse

    async def engine(request: AskRequest) -> AskResponse:
        if request.query.startswith(prefix):
            await asyncio.sleep(1.0)
        return AskResponse(answer=f"re: {request.query}")

    return engine
