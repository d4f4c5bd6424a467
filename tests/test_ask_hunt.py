"""Hostile cases for the ask hot path (WebSocketService.ask, AskTracker.begin,
Sender.direct/send_now): an ask made right after disconnect(), an ask awaited on a
loop other than the service's while that loop is not running. Each against a real
server over loopback."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from nexus_reactive import WebSocketService
from nexus_reactive.core import Phase
from nexus_reactive.errors import InvalidArgument, UsageError
from nexus_reactive.testing import NexusServer

from .conftest import ServerFactory
from .test_ask_runs import recording
from .waiting import EVENTUALLY, wait_for


async def test_an_ask_made_right_after_disconnect_waits_in_the_outbox(
    start_nexus: ServerFactory,
) -> None:
    # disconnect() is synchronous: the socket closes a moment later. An ask made in
    # that moment (the same task, nothing queued) must wait in the outbox for the next
    # connect(), as any send after disconnect() does, not go out on the closing socket.
    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries))
    async with WebSocketService(nexus.config(request_timeout=None)) as service:
        await service.ask("warm")

        async def disconnect_then_ask() -> str:
            service.disconnect()
            return (await service.ask("after")).answer

        task = asyncio.create_task(disconnect_then_ask())
        await wait_for(lambda: service.state.value.phase is Phase.DISCONNECTED)
        await wait_for(lambda: service._connection.sender._transport is None)
        await wait_for(lambda: nexus.stats.connections_open == 0)  # the old socket is gone
        # Every frame of the old connection was read before it counted as closed.
        assert nexus.stats.asks_received == 1, "sent after disconnect(), on the closing socket"
        assert service.outbox_size == 1 and not task.done()
        await service.connect()
        assert await task == "re: after"
    assert queries == ["warm", "after"]


def test_an_ask_on_another_loop_while_the_services_loop_is_not_running_is_refused() -> None:
    # The service is bound to loop A; A is not running (between two run_until_complete
    # calls, or finished). Awaiting ask() on loop B is refused with UsageError, as
    # ask()'s docs say, with nothing queued: its answer would come on loop A.
    home = asyncio.new_event_loop()
    server = NexusServer()
    try:
        home.run_until_complete(server.start())
        service = WebSocketService(server.config(request_timeout=None))
        home.run_until_complete(service.connect())
        assert home.run_until_complete(service.ask("home")).answer

        async def elsewhere() -> BaseException | None:
            try:
                async with asyncio.timeout(EVENTUALLY):  # (a hang, before the fix)
                    await service.ask("elsewhere")
            except BaseException as exc:
                return exc
            return None

        outcome = asyncio.run(elsewhere())
        assert isinstance(outcome, UsageError), repr(outcome)
        assert "event loop" in str(outcome)
        assert service.pending_count == 0 and service.outbox_size == 0
        home.run_until_complete(service.close())
    finally:
        home.run_until_complete(server.stop())
        home.close()


async def test_an_ask_made_while_close_runs_is_refused_not_left_waiting(
    start_nexus: ServerFactory,
) -> None:
    # close() disconnects at once, then waits for the connection's task. An ask made
    # meanwhile (here from a task a state subscriber starts on `disconnected`) must not
    # wait for an answer that nothing will ever bring: its deadline timer is cancelled
    # by close(), and no connection will open.
    nexus = await start_nexus()
    service = WebSocketService(nexus.config(request_timeout=None))
    await service.connect()
    late: list[asyncio.Task[object]] = []

    def on_state(state: Any) -> None:
        if state.phase is Phase.DISCONNECTED and not late:
            late.append(asyncio.create_task(service.ask("during close")))

    service.state.subscribe(on_state)
    await service.close()
    assert late
    await wait_for(lambda: late[0].done())
    error = late[0].exception()
    assert isinstance(error, UsageError) and "closed" in str(error), repr(error)
    assert service.pending_count == 0


@pytest.mark.parametrize("how", ["send", "send_query"])
async def test_a_message_sent_while_close_runs_is_refused_not_silently_dropped(
    start_nexus: ServerFactory, how: str
) -> None:
    # As the ask above: close() has begun, so nothing will ever write the outbox
    # again. A message queued then (no journal) was dropped with it, and the caller
    # was told nothing: it is refused instead, and nothing is queued.
    nexus = await start_nexus()
    service = WebSocketService(nexus.config())
    await service.connect()
    outcome: list[object] = []

    def on_state(state: Any) -> None:
        if state.phase is Phase.DISCONNECTED and not outcome:
            try:
                if how == "send":
                    service.send({"type": "ask", "id": "late", "payload": {"query": "q"}})
                else:
                    service.send_query("during close")
                outcome.append("queued")
            except UsageError as exc:
                outcome.append(exc)

    service.state.subscribe(on_state)
    await service.close()
    assert len(outcome) == 1
    assert isinstance(outcome[0], UsageError) and "closed" in str(outcome[0]), outcome
    assert how in str(outcome[0])
    assert service.outbox_size == 0 and service.pending_count == 0


@pytest.mark.parametrize("timeout", [math.inf, math.nan, -1.0, 0, "5"])
async def test_an_ask_with_a_timeout_that_cannot_be_right_is_refused_before_it_is_queued(
    start_nexus: ServerFactory, timeout: Any
) -> None:
    # timeout=math.inf reads as "no bound"; it raised OverflowError (NaN: ValueError,
    # "5": TypeError) from timing the ask, after the ask was queued: it went out, and
    # stayed pending for good with nobody awaiting it.
    nexus = await start_nexus()
    async with WebSocketService(nexus.config()) as service:
        with pytest.raises(InvalidArgument, match="timeout"):
            await service.ask("q", timeout=timeout)
        assert service.pending_count == 0 and service.outbox_size == 0
        assert (await service.ask("marker")).answer
        assert nexus.stats.asks_received == 1  # the marker only
