"""``lazy=True``: no socket until something needs one, closed after ``lazy_grace``
unused, over real loopback sockets.

What needs the connection: subscribers to ``messages`` (and its typed views),
``on_message`` handlers, a store's ``messages`` subscribers, asks waiting for their
answer, queued messages, a ``connect()`` being awaited. Watching ``state`` or
``errors`` does not. Hostile callers: subscribe/unsubscribe storms (from several
threads too), a subscriber that unsubscribes itself, sends during the grace,
``close()`` during the grace, a server that is down or refuses the key.
"""

from __future__ import annotations

import asyncio
import math
import threading
import warnings
from typing import Any

import pytest
from reactivex.scheduler.eventloop import AsyncIOScheduler

from nexus_reactive import (
    AskRequest,
    AskResponse,
    ConfigError,
    ConnectionState,
    Message,
    Phase,
    WebSocketConfig,
    WebSocketService,
    use_websocket,
)
from nexus_reactive.core.demand import REASON_DEMAND, REASON_UNUSED, idle_reason
from nexus_reactive.streams import Publisher

from .conftest import Nexus, ServerFactory, library_tasks
from .waiting import wait_for, wait_for_state

#: A grace no test waits out: the connection stays open unless the test ends it.
LONG = 600.0
#: A grace that ends soon: the test waits for the idle state.
SHORT = 0.05


def lazy(server: Nexus, grace: float = SHORT, **options: Any) -> WebSocketService:
    return WebSocketService(server.config(lazy=True, lazy_grace=grace, **options))


def timing(service: WebSocketService) -> bool:
    """Whether the grace timer runs (the connection's internals: no public view)."""
    assert service._lazy is not None
    return service._lazy.timing


def holders(service: WebSocketService) -> int:
    assert service._lazy is not None
    return service._lazy.holders


def ignore(_: object) -> None:
    pass


async def idle_and_quiet(service: WebSocketService, server: Nexus) -> None:
    """Idle, with no socket, task or timer left."""
    await wait_for_state(service, "idle")
    await wait_for(lambda: library_tasks() == [] and server.stats.connections_open == 0)
    assert not timing(service)


# -- opening on demand ----------------------------------------------------------------------------


async def test_watching_the_state_or_errors_opens_nothing(nexus: Nexus) -> None:
    service = lazy(nexus)
    states: list[ConnectionState] = []
    async with service:  # checks the key; connects nothing
        service.state.subscribe(states.append)
        service.errors.subscribe(ignore)
        service.outbox_depth.subscribe(ignore)

        assert states == [ConnectionState(Phase.IDLE, reason=REASON_UNUSED)]
        assert library_tasks() == [] and not timing(service)

        service.messages.subscribe(ignore)  # this one wants data

        assert service.state.value == ConnectionState(Phase.CONNECTING, reason=REASON_DEMAND)
        await wait_for_state(service, "connected")
    assert nexus.stats.connections_total == 1


async def test_an_ask_opens_it_and_it_closes_after_the_grace(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        assert (await service.ask("first")).answer == "You asked: first"
        await idle_and_quiet(service, nexus)
        assert service.state.value == ConnectionState(Phase.IDLE, reason=idle_reason(SHORT))

        assert (await service.ask("second")).answer == "You asked: second"  # opens again
        await idle_and_quiet(service, nexus)
    assert nexus.stats.connections_total == 2


async def test_a_send_opens_it_and_is_written_before_it_closes(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        service.send({"type": "ping-ish", "id": "n1", "payload": {}})  # not an ask
        await wait_for(lambda: nexus.stats.connections_total == 1)
        await idle_and_quiet(service, nexus)
        assert service.outbox_size == 0


async def test_handlers_and_typed_streams_need_it_until_they_go(nexus: Nexus) -> None:
    async with lazy(nexus, LONG) as service:
        unsubscribe = service.on_response(ignore)
        typed = service.responses.subscribe(ignore)
        await wait_for_state(service, "connected")
        assert holders(service) == 2

        unsubscribe()
        unsubscribe()  # twice: released once
        assert holders(service) == 1 and not timing(service)
        typed.dispose()

        assert holders(service) == 0 and timing(service)


async def test_connect_opens_it_and_the_grace_applies_after(nexus: Nexus) -> None:
    async with lazy(nexus) as service:
        await service.connect()
        assert service.state.value.connected
        await idle_and_quiet(service, nexus)


async def test_a_zero_grace_closes_as_soon_as_nothing_needs_it(nexus: Nexus) -> None:
    async with lazy(nexus, 0) as service:
        await service.connect()  # an awaited connect() needs it: not closed under it
        assert (await service.ask("quick")).answer == "You asked: quick"
        await idle_and_quiet(service, nexus)


# -- the grace ------------------------------------------------------------------------------------


async def test_a_new_subscriber_cancels_the_grace(nexus: Nexus) -> None:
    async with lazy(nexus, LONG) as service:
        first = service.messages.subscribe(ignore)
        await wait_for_state(service, "connected")
        first.dispose()
        assert timing(service)

        second = service.messages.subscribe(ignore)

        assert not timing(service) and service.state.value.connected
        second.dispose()
        assert timing(service)
    assert not timing(service) and library_tasks() == []
    assert nexus.stats.connections_total == 1


async def test_an_ask_during_the_grace_keeps_it_open_until_answered(nexus: Nexus) -> None:
    async with lazy(nexus, LONG) as service:
        service.messages.subscribe(ignore).dispose()
        await wait_for_state(service, "connected")
        assert timing(service)

        service.send_query("during the grace")

        assert not timing(service)
        await wait_for(lambda: service.pending_count == 0)  # answered
        assert timing(service) and service.state.value.connected
    assert nexus.stats.connections_total == 1


async def test_asks_in_flight_keep_it_open_after_the_last_subscriber(
    start_nexus: ServerFactory,
) -> None:
    gate = asyncio.Event()

    async def engine(request: AskRequest) -> AskResponse:
        await gate.wait()
        return AskResponse(answer="late")

    server = await start_nexus(engine=engine)
    async with lazy(server, LONG) as service:
        subscription = service.messages.subscribe(ignore)
        ask = asyncio.ensure_future(service.ask("slow"))
        await wait_for(lambda: server.stats.asks_received == 1)

        subscription.dispose()

        assert not timing(service)  # the ask needs it
        gate.set()
        assert (await ask).answer == "late"
        await wait_for(lambda: timing(service))


async def test_close_during_the_grace_leaves_no_timer_and_no_task(nexus: Nexus) -> None:
    service = lazy(nexus, LONG)
    service.messages.subscribe(ignore).dispose()
    await wait_for_state(service, "connected")
    assert timing(service)

    await service.close()

    assert not timing(service) and library_tasks() == []
    assert service.state.value.phase is Phase.CLOSED
    await wait_for(lambda: nexus.stats.connections_open == 0)


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
    async with lazy(nexus) as service:
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


# -- the options ----------------------------------------------------------------------------------


def test_lazy_and_its_grace_show_in_the_repr_and_are_checked() -> None:
    config = WebSocketConfig(lazy=True, lazy_grace=5)
    assert "lazy=True" in repr(config) and "lazy_grace=5" in repr(config)
    assert WebSocketConfig().lazy is False and WebSocketConfig().lazy_grace == 30.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lazy": "yes"}, "lazy must be True or False"),
        ({"lazy": True, "lazy_grace": -1}, "lazy_grace must be a finite number of seconds >= 0"),
        ({"lazy": True, "lazy_grace": math.nan}, "lazy_grace must be a finite"),
        ({"lazy": True, "lazy_grace": math.inf}, "lazy_grace must be a finite"),
        ({"lazy": True, "lazy_grace": "30"}, "lazy_grace must be a finite"),
        ({"lazy_grace": 5}, r"lazy_grace=5 has no effect without lazy=True"),
        ({"lazy": True, "lazy_grace": 30_000}, "looks like milliseconds"),
    ],
)
def test_bad_lazy_options_are_clear_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WebSocketConfig(**options)


def test_a_long_grace_is_warned_about_and_an_inherited_one_is_not_refused() -> None:
    with pytest.warns(UserWarning, match="lazy_grace=900 is 15 min"):
        WebSocketConfig(lazy=True, lazy_grace=900)
    base = WebSocketConfig(lazy=True, lazy_grace=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eager = WebSocketConfig.from_options(base, lazy=False)  # the grace was inherited
    assert eager.lazy is False


def test_a_misspelt_lazy_option_names_the_right_one() -> None:
    with pytest.raises(ConfigError, match="did you mean lazy_grace"):
        WebSocketConfig(lazy_grase=5)  # type: ignore[call-arg]
