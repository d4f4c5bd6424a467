"""``lazy=True`` under hostile callers (storms, re-entrant and threaded unsubscribes, sends
and close() during the grace, a server down or refusing the key), the decisions demand
does not undo, and the store's demand; over real loopback sockets."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from reactivex.scheduler.eventloop import AsyncIOScheduler

from nexus_reactive import ConnectionState, Message, Phase, WebSocketService, use_websocket
from nexus_reactive.core.demand import REASON_UNUSED
from nexus_reactive.streams import Publisher

from .conftest import Nexus, library_tasks
from .test_lazy import LONG, SHORT, holders, idle_and_quiet, ignore, lazy, timing
from .waiting import wait_for, wait_for_state

# -- hostile callers ------------------------------------------------------------------------------


async def test_a_subscribe_unsubscribe_storm_opens_one_connection(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        kept = []
        for i in range(1_000):
            subscription = service.messages.subscribe(ignore)
            if i % 3:
                subscription.dispose()
            else:
                kept.append(subscription)
        for subscription in kept:
            subscription.dispose()
            subscription.dispose()  # twice: released once

        assert holders(service) == 0
        await idle_and_quiet(service, nexus)
    assert nexus.stats.connections_total == 1


async def test_a_storm_from_several_threads_balances_out(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        anchor = service.messages.subscribe(ignore)
        await wait_for_state(service, "connected")

        def storm() -> None:
            for _ in range(300):
                service.messages.subscribe(ignore).dispose()
                service.on_message("response", ignore)()

        threads = [threading.Thread(target=storm) for _ in range(4)]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])

        assert holders(service) == 1  # the anchor
        anchor.dispose()
        await idle_and_quiet(service, nexus)
    assert nexus.stats.connections_total == 1


async def test_a_subscriber_that_unsubscribes_itself(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        got: list[Message] = []

        def once(message: Message) -> None:
            got.append(message)
            subscription.dispose()  # from inside the emission

        subscription = service.messages.subscribe(once)
        await service.ask("one")
        await service.ask("two")  # not delivered to it any more

        assert len(got) == 1 and holders(service) == 0
        await idle_and_quiet(service, nexus)


async def test_opening_from_inside_the_idle_states_subscriber(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        later: list[Any] = []

        def on_state(state: ConnectionState) -> None:
            if state.idle and state.reason != REASON_UNUSED and not later:
                # Re-entered: inside the publication of the idle state.
                later.append(service.messages.subscribe(ignore))

        service.state.subscribe(on_state)
        service.messages.subscribe(ignore).dispose()  # opens it, then the grace runs
        await wait_for(lambda: bool(later))
        await wait_for_state(service, "connected")
        assert holders(service) == 1

        later[0].dispose()
        await idle_and_quiet(service, nexus)


async def test_subscribing_from_another_thread_opens_it(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        subscription = await asyncio.to_thread(service.messages.subscribe, ignore)
        await wait_for_state(service, "connected")
        await asyncio.to_thread(subscription.dispose)
        await idle_and_quiet(service, nexus)


# -- decisions demand does not undo ---------------------------------------------------------------


async def test_disconnect_keeps_it_closed_whatever_the_demand(nexus: Nexus) -> None:
    async with lazy(nexus, LONG) as service:
        service.messages.subscribe(ignore)
        await wait_for_state(service, "connected")

        service.disconnect()
        service.messages.subscribe(ignore)
        ask_id = service.send_query("waits")

        assert service.state.value.phase is Phase.DISCONNECTED
        await wait_for(lambda: library_tasks() == [] and nexus.stats.connections_open == 0)
        assert not timing(service) and service.outbox_size == 1

        await service.connect()  # resumes: the queued ask goes out
        await wait_for(lambda: service.pending_count == 0)
        assert ask_id not in service._core.pending


async def test_a_fatal_failure_is_not_retried_by_new_demand(nexus: Nexus) -> None:
    key = ["wrong"]
    async with lazy(nexus, api_key=lambda: key[0]) as service:
        first = service.messages.subscribe(ignore)
        await wait_for_state(service, "failed")
        first.dispose()
        service.messages.subscribe(ignore)

        await wait_for(lambda: library_tasks() == [])
        assert service.state.value.failed and nexus.stats.connections_total == 0

        key[0] = nexus.key
        service.reconnect()  # the way to try again
        await wait_for_state(service, "connected")


async def test_a_server_that_is_down_is_given_up_on_when_unneeded(nexus: Nexus) -> None:
    await nexus.stop()
    async with lazy(nexus, max_reconnect_attempts=None) as service:
        subscription = service.messages.subscribe(ignore)
        await wait_for(lambda: service.state.value.attempt >= 2)  # retrying

        subscription.dispose()

        await wait_for_state(service, "idle")  # stopped retrying: no error shown
        assert service.state.value.error is None
        await wait_for(lambda: library_tasks() == [])


async def test_reconnect_while_idle_opens_it_and_the_grace_applies(nexus: Nexus) -> None:
    # Nothing needs this connection, so its grace counts from reconnect(): a grace of
    # SHORT (50 ms) can end before a loaded machine has connected (connecting -> idle,
    # seen once under `make test-lowest`). Two seconds leave room to connect first.
    async with lazy(nexus, 2.0) as service:
        service.reconnect()
        await wait_for_state(service, "connected")
        await idle_and_quiet(service, nexus)


async def test_reconnect_during_the_grace_starts_the_grace_again(nexus: Nexus) -> None:
    """A grace nearly over must not close the connection reconnect() just opened."""
    async with lazy(nexus, grace=LONG) as service:
        service.messages.subscribe(ignore).dispose()  # opened, then unneeded: timing
        await wait_for_state(service, "connected")
        assert timing(service)
        loop = asyncio.get_running_loop()
        await wait_for(lambda: loop.time() > deadline(service) - LONG)  # some grace used

        asked_at = loop.time()
        service.reconnect()

        assert timing(service) and deadline(service) >= asked_at + LONG


def deadline(service: WebSocketService) -> float:
    assert service._lazy is not None and service._lazy._timer is not None
    return service._lazy._timer.when()


# -- the store ------------------------------------------------------------------------------------


async def test_a_lazy_store_connects_when_its_messages_are_watched(nexus: Nexus) -> None:
    async with use_websocket(nexus.config(), lazy=True, lazy_grace=SHORT) as store:
        store.state.subscribe(ignore)
        assert store.state.value.idle and library_tasks() == []

        subscription = store.messages.subscribe(ignore)
        await wait_for_state(store, "connected")
        subscription.dispose()
        await wait_for_state(store, "idle")

        ask_id = store.send_message("opens it")  # an ask needs it too
        await wait_for(lambda: any(m.id == ask_id for m in store.messages.value))
        await wait_for_state(store, "idle")
    assert nexus.stats.connections_total == 2
    assert library_tasks() == []


async def test_a_lazy_store_watched_first_from_another_thread_opens_it(nexus: Nexus) -> None:
    # Nothing ran the store's service on the loop yet: the store bound it to its loop,
    # so a subscription on another thread reaches the loop (else it would only be
    # counted, and applied at the first ask).
    async with use_websocket(nexus.config(), lazy=True, lazy_grace=SHORT) as store:
        assert store.state.value.idle
        subscription = await asyncio.to_thread(store.messages.subscribe, ignore)
        await wait_for_state(store, "connected")
        await asyncio.to_thread(subscription.dispose)
        await wait_for_state(store, "idle")
        await wait_for(lambda: library_tasks() == [] and nexus.stats.connections_open == 0)
        assert not timing(store.service)


async def test_demand_from_counts_a_views_subscribers_only_when_lazy(nexus: Nexus) -> None:
    view: Publisher[int] = Publisher("view")
    other = asyncio.new_event_loop()
    try:
        eager = WebSocketService(nexus.config())
        assert eager.demand_from(view.stream, other) is False
        async with eager:  # not bound to the other loop: nothing was done
            assert eager.state.value.connected
    finally:
        other.close()
    async with lazy(nexus, LONG) as service:
        assert service.demand_from(view.stream, asyncio.get_running_loop()) is True
        subscription = view.stream.subscribe(ignore)
        assert holders(service) == 1
        await wait_for_state(service, "connected")
        subscription.dispose()
        assert holders(service) == 0 and timing(service)


async def test_a_lazy_store_on_a_scheduler_counts_the_views_subscribers(nexus: Nexus) -> None:
    scheduler = AsyncIOScheduler(asyncio.get_running_loop())
    config = nexus.config(lazy=True, lazy_grace=SHORT)
    async with use_websocket(config, scheduler=scheduler) as store:
        subscription = store.messages.subscribe(ignore)
        await wait_for_state(store, "connected")
        subscription.dispose()
        await wait_for_state(store, "idle")


async def test_shared_lazy_stores_close_with_the_last_watcher(nexus: Nexus) -> None:
    config = nexus.config(lazy=True, lazy_grace=LONG)
    async with (
        use_websocket(config, share=True) as one,
        use_websocket(config, share=True) as two,
    ):
        assert one.service is two.service
        a = one.messages.subscribe(ignore)
        b = two.messages.subscribe(ignore)
        await wait_for_state(one, "connected")
        a.dispose()
        assert not timing(one.service)
        b.dispose()
        assert timing(one.service)
    assert library_tasks() == []
