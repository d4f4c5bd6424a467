"""Asks made together (tasks woken by one read of answers) are written in runs from the
tasks that make them, so that the server starts on them while the rest are made.

Every case runs against the reference server over loopback. A run goes out only when
nothing else could go first or be held back: never while the writer holds frames
(mid-drain, or paced), never past flow control, never on a compressed connection; and
whichever way a frame goes, it is written once, in the order made, and counted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from nexus_reactive import AskRequest, AskResponse, WebSocketService

from .conftest import Nexus, ServerFactory
from .test_cancel_in_drain import BIG, HeldProxy
from .waiting import wait_for

RUN = 32  # outbound._RUN
ASKS = 40


def recording(queries: list[str]) -> Callable[[AskRequest], Awaitable[AskResponse]]:
    async def engine(request: AskRequest) -> AskResponse:
        queries.append(request.query[:8])
        return AskResponse(answer=f"re: {request.query[:8]}")

    return engine


async def ask_together(
    service: WebSocketService, n: int
) -> tuple[list[asyncio.Task[AskResponse]], int]:
    """Start ``n`` asks in one turn of the loop; return their tasks and the frames the
    transport had handed to the socket once all ``n`` were made, before the writer task
    ran (a task created after them runs after them, and before the writer they wake)."""
    sender = service._connection.sender
    start = getattr(sender._transport, "handed", 0)
    tasks = [asyncio.create_task(service.ask(f"q{i:03d}")) for i in range(n)]

    async def probe() -> int:
        return int(getattr(sender._transport, "handed", 0)) - start

    return tasks, await asyncio.create_task(probe())


@dataclass
class Rig:
    """The reference server behind a :class:`HeldProxy`, a service connected through it,
    and one ask the server holds (``slow``), so that no ask goes alone."""

    nexus: Nexus
    proxy: HeldProxy
    service: WebSocketService
    queries: list[str]  # what the server was asked, in order (8 characters each)

    def release(self) -> None:
        """The proxy reads again, and the server answers the slow ask."""
        self.proxy.release()
        self._gate.set()

    _gate: asyncio.Event


@contextlib.asynccontextmanager
async def held_rig(start_nexus: ServerFactory, max_size: int) -> AsyncIterator[Rig]:
    queries: list[str] = []
    gate = asyncio.Event()
    record = recording(queries)

    async def engine(request: AskRequest) -> AskResponse:
        if request.query == "slow":
            await gate.wait()
        return await record(request)

    nexus = await start_nexus(engine=engine, max_message_size=max_size, max_query_length=max_size)
    async with HeldProxy(nexus.port) as proxy:
        config = nexus.config(url=proxy.url(), request_timeout=None, heartbeat=None)
        async with WebSocketService(config) as service:
            await service.connect()
            slow = asyncio.create_task(service.ask("slow"))
            await wait_for(lambda: nexus.stats.asks_received == 1)
            yield Rig(nexus, proxy, service, queries, gate)
            await slow
    queries.remove("slow")  # (answered whenever its gate opened)


async def test_a_run_of_asks_goes_out_before_the_writer_wakes_in_order_and_once(
    start_nexus: ServerFactory,
) -> None:
    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries))
    async with WebSocketService(nexus.config(metrics=True, heartbeat=None)) as service:
        await service.connect()
        tasks, handed = await ask_together(service, ASKS)
        # The first went alone (nothing was pending); the next RUN as one write.
        assert handed == 1 + RUN
        answers = await asyncio.gather(*tasks)
        assert [a.answer for a in answers] == [f"re: q{i:03d}" for i in range(ASKS)]
        assert queries == [f"q{i:03d}" for i in range(ASKS)]
        assert nexus.stats.asks_received == ASKS
        m = service.metrics.value
        assert (m.frames_out, m.asks_answered, m.outbox_depth) == (ASKS, ASKS, 0)


async def test_fewer_asks_than_a_run_wait_for_the_writer(start_nexus: ServerFactory) -> None:
    nexus = await start_nexus()
    async with WebSocketService(nexus.config(heartbeat=None)) as service:
        await service.connect()
        tasks, handed = await ask_together(service, RUN)  # 1 alone, RUN - 1 queued
        assert handed == 1
        assert len(await asyncio.gather(*tasks)) == RUN


@pytest.mark.parametrize("pacing", ["rate", "retry_after"])
async def test_a_paced_connection_leaves_every_write_to_the_writer(
    start_nexus: ServerFactory, pacing: str
) -> None:
    nexus = await start_nexus()
    options = {"rate": 10_000.0, "burst": 10_000} if pacing == "rate" else {}
    async with WebSocketService(nexus.config(heartbeat=None, **options)) as service:
        await service.connect()
        sender = service._connection.sender
        await service.ask("warm")  # (pending asks: nothing goes alone either)
        if pacing == "retry_after":
            sender.hold(0.3)  # what a server's retry_after does (seconds)
        tasks, handed = await ask_together(service, ASKS)
        assert handed == 0
        assert len(await asyncio.gather(*tasks)) == ASKS
        assert nexus.stats.asks_received == ASKS + 1


async def test_a_run_waits_behind_a_write_that_waits_to_drain_and_keeps_its_place(
    start_nexus: ServerFactory,
) -> None:
    # The server stops reading mid-way through a big ask, which the writer task wrote
    # (an ask was pending, so it did not go alone): the writer holds it while the
    # socket drains. Asks made together meanwhile must not go out from their tasks:
    # when the server reads again, all arrive once, in the order made.
    async with held_rig(start_nexus, 3 * BIG) as rig:
        sender = rig.service._connection.sender
        rig.proxy.hold()
        noise = base64.b64encode(os.urandom(BIG)).decode()
        big = asyncio.create_task(rig.service.ask("big-one " + noise))
        await wait_for(lambda: sender._writer_holds, message="the big ask waits to drain")
        tasks, handed = await ask_together(rig.service, ASKS)
        assert handed == 0
        rig.release()
        await asyncio.gather(big, *tasks)
    assert rig.queries == ["big-one "] + [f"q{i:03d}" for i in range(ASKS)]
    assert rig.nexus.stats.asks_received == ASKS + 2


async def test_a_run_the_socket_cannot_take_waits_for_the_writer_once_not_per_ask(
    start_nexus: ServerFactory,
) -> None:
    # Big asks made together, the server reading nothing: the first run goes out and
    # puts the socket behind; the next is refused by the transport, goes back to the
    # head of the outbox as if never taken (no attempt counted), and nothing is taken
    # out again from the asks' tasks until the writer task has written. When the server
    # reads again, every ask arrives once, in the order made.
    size = 100_000
    async with held_rig(start_nexus, 4 * size) as rig:
        service, sender = rig.service, rig.service._connection.sender
        rig.proxy.hold()
        start = sender._transport.handed  # type: ignore[attr-defined]
        pad = "x" * size
        tasks = [asyncio.create_task(service.ask(f"q{i:03d} {pad}")) for i in range(3 * RUN)]

        async def probe() -> tuple[int, bool, int, list[int]]:
            handed = sender._transport.handed - start  # type: ignore[attr-defined]
            sends = [e.sends for e in service._core.pending._asks.values()]
            return handed, sender._stalled, service.outbox_size, sends

        # (A task made after the asks runs after them, before the writer they wake.)
        handed, stalled, queued, sends = await asyncio.create_task(probe())
        assert handed == RUN and stalled
        assert queued == 2 * RUN
        assert sends.count(0) == 2 * RUN  # the refused run counted no attempt
        rig.release()
        await asyncio.gather(*tasks)
    assert rig.queries == [f"q{i:03d} xxx" for i in range(3 * RUN)]  # (8 characters)
    assert rig.nexus.stats.asks_received == 3 * RUN + 1


async def test_a_compressed_connection_still_answers_every_ask_of_a_run(
    start_nexus: ServerFactory,
) -> None:
    # aiohttp compresses in send_frame, frame by frame: no write without waiting.
    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries))
    async with WebSocketService(nexus.config(compression=True, heartbeat=None)) as service:
        await service.connect()
        tasks, handed = await ask_together(service, ASKS)
        assert handed <= 1
        answers = await asyncio.gather(*tasks)
        assert [a.answer for a in answers] == [f"re: q{i:03d}" for i in range(ASKS)]
    assert queries == [f"q{i:03d}" for i in range(ASKS)]


async def test_a_run_of_journaled_asks_is_recorded_as_sent(
    start_nexus: ServerFactory, tmp_path: Path
) -> None:
    nexus = await start_nexus()
    db = tmp_path / "client.db"
    async with WebSocketService(nexus.config(persist=db, heartbeat=None)) as service:
        await service.connect()
        tasks, handed = await ask_together(service, ASKS)
        assert handed == 1 + RUN
        await asyncio.gather(*tasks)
        await service.flush()
    async with WebSocketService(nexus.config(persist=db, heartbeat=None)) as again:
        assert again.outbox_size == 0  # nothing to send again
    assert nexus.stats.asks_received == ASKS
