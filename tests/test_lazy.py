"""``lazy=True``: no socket until something needs one, closed after ``lazy_grace``
unused, over real loopback sockets.

What needs the connection: subscribers to ``messages`` (and its typed views),
``on_message`` handlers, a store's ``messages`` subscribers, asks waiting for their
answer, queued messages, a ``connect()`` being awaited. Watching ``state`` or
``errors`` does not. Hostile callers: subscribe/unsubscribe storms (from several
threads too), a subscriber that unsubscribes itself, sends during the grace,
``close()`` during the grace, a server that is down or refuses the key (those, the
decisions demand does not undo and the store: test_lazy_hostile.py).
"""

from __future__ import annotations

import asyncio
import math
import warnings
from typing import Any

import pytest

from nexus_reactive import (
    AskRequest,
    AskResponse,
    ConfigError,
    ConnectionState,
    Phase,
    WebSocketConfig,
    WebSocketService,
)
from nexus_reactive.core.demand import REASON_DEMAND, REASON_UNUSED, idle_reason

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
