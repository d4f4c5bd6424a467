"""Hostile cases for asks written in runs from the tasks that make them (Sender.flush):
reconnects while a run waits in the socket, signed and sealed connections, cancelled
callers, metrics and outbox_depth, and callers on another thread. Every case runs
against the reference server over loopback."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from nexus_reactive import AskRequest, AskResponse, WebSocketService
from nexus_reactive.signing import public_key_hex
from nexus_reactive.testing import NexusServer, client_config

from .conftest import ServerFactory
from .signed_keys import client_key_fixture, server_key_fixture  # noqa: F401
from .test_ask_runs import ASKS, RUN, ask_together, recording
from .test_cancel_in_drain import HeldProxy
from .waiting import EVENTUALLY, wait_for


async def test_a_run_held_in_the_socket_goes_again_after_reconnect_once_each(
    start_nexus: ServerFactory,
) -> None:
    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries))
    async with HeldProxy(nexus.port) as proxy:
        config = nexus.config(url=proxy.url(), request_timeout=None, heartbeat=None)
        async with WebSocketService(config) as service:
            await service.connect()
            sender = service._connection.sender
            await service.ask("warm")
            pending = asyncio.create_task(service.ask("pending"))  # none goes alone
            await wait_for(lambda: nexus.stats.asks_received == 2)
            proxy.hold()
            tasks, handed = await ask_together(service, ASKS)
            assert handed == 1 + RUN  # one alone, a run from the asks' tasks: held in the relay
            first = sender._transport
            service.reconnect()
            proxy.release()
            await wait_for(lambda: sender._transport not in (None, first))
            assert not sender._writer_holds and not sender._stalled
            answers = await asyncio.gather(*tasks)
            await pending
            assert [a.answer for a in answers] == [f"re: q{i:03d}" for i in range(ASKS)]
            assert not service._core.pending._asks
    made = [q for q in queries if q.startswith("q")]
    assert made == sorted(set(made)) == [f"q{i:03d}" for i in range(ASKS)]


@pytest.mark.parametrize("encrypt", [False, True], ids=["signed", "sealed"])
async def test_a_run_on_a_signed_or_sealed_connection_goes_through_the_guard(
    server_key: Ed25519PrivateKey, client_key: Ed25519PrivateKey, encrypt: bool
) -> None:
    queries: list[str] = []
    async with NexusServer(signing_key=server_key, engine=recording(queries)) as server:
        cfg = client_config(
            server.url,
            server.key,
            signing_key=client_key,
            server_key=public_key_hex(server_key),
            encrypt=encrypt,
            heartbeat=None,
        )
        async with WebSocketService(cfg) as service:
            await service.connect()
            await service.ask("warm")
            tasks, _ = await ask_together(service, ASKS)
            answers = await asyncio.gather(*tasks)
            assert [a.answer for a in answers] == [f"re: q{i:03d}" for i in range(ASKS)]
        assert server.stats.frames_refused == 0
    assert queries[1:] == [f"q{i:03d}" for i in range(ASKS)]


async def test_cancelled_callers_of_a_run_leave_nothing_behind(start_nexus: ServerFactory) -> None:
    nexus = await start_nexus()
    async with WebSocketService(nexus.config(metrics=True, heartbeat=None)) as service:
        await service.connect()
        depths: list[int] = []
        service.outbox_depth.subscribe(depths.append)
        tasks, _ = await ask_together(service, 3 * RUN)
        for task in tasks[::2]:
            task.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        answered = [d for d in done if isinstance(d, AskResponse)]
        assert len(answered) >= len(tasks) // 2
        await wait_for(lambda: service.metrics.value.outbox_depth == 0)
        assert depths[-1] == 0
        assert not service._core.pending._asks and not service._core.outbox.items
        m = service.metrics.value
        assert m.frames_out == nexus.stats.asks_received


async def test_runs_made_on_the_loop_from_another_thread_are_answered(
    start_nexus: ServerFactory,
) -> None:
    nexus = await start_nexus()
    async with WebSocketService(nexus.config(heartbeat=None)) as service:
        await service.connect()
        loop = asyncio.get_running_loop()
        results: list[Any] = []

        def other() -> None:
            async def many() -> list[AskResponse]:
                return await asyncio.gather(*(service.ask(f"t{i}") for i in range(ASKS)))

            results.append(asyncio.run_coroutine_threadsafe(many(), loop).result(30))

        thread = threading.Thread(target=other)
        thread.start()
        await wait_for(lambda: bool(results))
        thread.join()
        assert len(results[0]) == ASKS


async def test_disconnect_while_a_run_waits_in_the_socket_then_connect_again(
    start_nexus: ServerFactory,
) -> None:
    from nexus_reactive.errors import ConnectionClosed

    nexus = await start_nexus()
    async with HeldProxy(nexus.port) as proxy:
        config = nexus.config(url=proxy.url(), request_timeout=None, heartbeat=None)
        async with WebSocketService(config) as service:
            await service.connect()
            sender = service._connection.sender
            proxy.hold()
            tasks, handed = await ask_together(service, 3 * RUN)
            assert handed >= RUN
            service.disconnect()
            done = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(isinstance(d, ConnectionClosed) for d in done)
            proxy.release()
            await service.connect()
            assert not sender._writer_holds and not sender._stalled
            tasks, _ = await ask_together(service, ASKS)
            assert len(await asyncio.gather(*tasks)) == ASKS
            assert service.outbox_size == 0 and not service._core.pending._asks


async def test_a_lazy_service_answers_runs_and_goes_idle(start_nexus: ServerFactory) -> None:
    nexus = await start_nexus()
    async with WebSocketService(nexus.config(lazy=True, heartbeat=None)) as service:
        tasks = [asyncio.create_task(service.ask(f"l{i}")) for i in range(ASKS)]
        assert len(await asyncio.gather(*tasks)) == ASKS
        tasks, _ = await ask_together(service, ASKS)
        assert len(await asyncio.gather(*tasks)) == ASKS
        assert service.outbox_size == 0


async def test_runs_across_repeated_cuts_are_each_answered_once(
    start_nexus: ServerFactory,
) -> None:
    # Rounds of runs made together; the proxy resets the connection mid-round: every
    # ask is answered, with its own answer, and nothing is left in the outbox or held.
    from nexus_reactive.testing import FaultProxy

    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries))
    async with FaultProxy("127.0.0.1", nexus.port) as proxy:
        config = nexus.config(
            url=proxy.url(),
            request_timeout=None,
            heartbeat=None,
            reconnect_interval=0.01,
            max_reconnect_interval=0.05,
        )
        async with WebSocketService(config) as service:
            await service.connect()
            sender = service._connection.sender
            for round_ in range(8):
                tasks = [
                    asyncio.create_task(service.ask(f"r{round_}{i:03d}")) for i in range(3 * RUN)
                ]
                await asyncio.sleep(0)
                await proxy.cut()
                answers = await asyncio.gather(*tasks)
                assert [a.answer for a in answers] == [
                    f"re: r{round_}{i:03d}"[:12] for i in range(3 * RUN)
                ]
            assert service.outbox_size == 0 and not service._core.pending._asks
            await wait_for(lambda: not sender._writer_holds and not sender._stalled)


async def test_runs_through_repeated_stalls_arrive_in_the_order_made(
    start_nexus: ServerFactory,
) -> None:
    # The relay stops and starts reading over and over while runs of big asks are made:
    # runs written from the asks' tasks, refused runs put back, the writer's drains; the
    # server must see every ask once, in the order made.
    queries: list[str] = []

    async def engine(request: AskRequest) -> AskResponse:
        queries.append(request.query.split(" ")[0])
        return AskResponse(answer="ok")

    size = 20_000
    nexus = await start_nexus(engine=engine, max_message_size=4 * size, max_query_length=4 * size)
    made: list[str] = []
    async with HeldProxy(nexus.port) as proxy:
        config = nexus.config(url=proxy.url(), request_timeout=None, heartbeat=None)
        async with WebSocketService(config) as service:
            await service.connect()
            sender = service._connection.sender
            pad = "x" * size
            tasks: list[asyncio.Task[AskResponse]] = []
            stalls = 0
            for round_ in range(12):
                if round_ % 2 == 0:
                    proxy.hold()
                else:
                    proxy.release()
                names = [f"r{round_:02d}q{i:03d}" for i in range(2 * RUN + 5)]
                made += names
                tasks += [asyncio.create_task(service.ask(f"{n} {pad}")) for n in names]

                async def probe() -> bool:
                    return sender._stalled

                stalls += await asyncio.create_task(probe())
            proxy.release()
            await asyncio.gather(*tasks)
    assert queries == made
    assert stalls  # (the case under test happened)


async def test_runs_over_tls_arrive_once_in_order(aiohttp_server: Any, tmp_path: Any) -> None:
    from nexus_reactive.server import create_app
    from nexus_reactive.server.runner import server_ssl_context

    from .conftest import KEY
    from .conftest import client_config as conf_config
    from .tlsutil import make_tls

    tls = make_tls(tmp_path)
    server = await aiohttp_server(
        create_app(api_keys=KEY), ssl=server_ssl_context(tls.server_cert, tls.server_key)
    )
    url = f"wss://localhost:{server.port}/"
    config = conf_config(url, ssl=tls.client_context(), heartbeat=None)
    async with WebSocketService(config) as service:
        await service.connect()
        sender = service._connection.sender
        tasks, handed = await ask_together(service, 4 * RUN)
        assert handed >= 1 + RUN  # (the run went from the asks' tasks over TLS too)
        answers = await asyncio.gather(*tasks)
        assert [a.answer for a in answers] == [f"You asked: q{i:03d}" for i in range(4 * RUN)]
        assert not sender._stalled and not sender._writer_holds


async def test_runs_against_a_rate_limiting_server_are_each_answered_once(
    start_nexus: ServerFactory,
) -> None:
    # The server refuses what goes over its rate with retry_after: refused asks go again
    # after the pause, the rest of the run waits behind them; every ask gets its answer.
    # Runs go out before the first refusal comes back, so the server also closes with
    # 4429 after 51 refusals in a row, and each reconnect sends the backlog again: a
    # retry each, and the budget resets only after 10 s open. The default 10 retries
    # ran out on 1 run in 10 (whenever reconnecting outran the server's refill):
    # unlimited here, as an application that expects this server would set.
    queries: list[str] = []
    nexus = await start_nexus(engine=recording(queries), rate_limit=400.0, rate_burst=40)
    config = nexus.config(heartbeat=None, request_timeout=None, max_reconnect_attempts=None)
    async with WebSocketService(config) as service:
        await service.connect()
        names = [f"q{i:03d}" for i in range(5 * RUN)]
        tasks = [asyncio.create_task(service.ask(n)) for n in names]
        answers = await asyncio.wait_for(asyncio.gather(*tasks), EVENTUALLY)
        assert [a.answer for a in answers] == [f"re: {n}" for n in names]
        assert sorted(queries) == names  # each answered once by the engine
