"""The sans-I/O core's states: ClientCore's state changes and ConnectionState.

No sockets, no sleeps: time and randomness are injected.
"""

from __future__ import annotations

import dataclasses

import pytest

from nexus_reactive.core import ClientCore, ConnectionState, Phase, close_error
from nexus_reactive.errors import RetriesExhausted

from .test_core import FakeClock, reconnector, retryable
from .test_core_asks import connected_core

# == ClientCore: states =========================================================================


def test_a_new_core_is_disconnected() -> None:
    core: ClientCore[object] = ClientCore()

    assert core.state == ConnectionState(phase=Phase.DISCONNECTED)


def test_attempt_is_connecting_with_the_attempt_number() -> None:
    core: ClientCore[object] = ClientCore(reconnector=reconnector())

    first = core.attempt()
    core.lost(retryable())
    second = core.attempt()

    assert first.phase is Phase.CONNECTING
    assert first.attempt == 0
    assert second.phase is Phase.CONNECTING
    assert second.attempt == 1
    assert second.retry_in is None
    assert core.state is second


def test_authenticating_then_opened_is_connected_with_no_error() -> None:
    core: ClientCore[object] = ClientCore(reconnector=reconnector())
    core.attempt()
    core.lost(retryable("boom", close_code=1011))
    core.attempt()

    authenticating = core.authenticating()
    opened = core.opened()

    assert authenticating.phase is Phase.AUTHENTICATING
    assert authenticating.attempt == 1
    assert opened == ConnectionState(phase=Phase.CONNECTED)
    assert opened.error is None
    assert opened.close_code is None


def test_lost_is_waiting_with_retry_in_close_code_and_error_text() -> None:
    core = connected_core()

    decision = core.lost(close_error(1012, "deploy"))

    state = core.state
    assert decision.delay == 1.0
    assert state.phase is Phase.WAITING
    assert state.retry_in == decision.delay
    assert state.close_code == 1012
    assert state.error is not None and "deploy" in state.error
    assert state.attempt == 1


def test_fatal_loss_is_failed_with_the_error_itself() -> None:
    core = connected_core()
    error = close_error(4401)

    decision = core.lost(error)

    assert decision.delay is None
    assert decision.error is error
    assert core.state.phase is Phase.FAILED
    assert core.state.failed
    assert core.state.close_code == 4401
    assert core.state.error == str(error)
    assert core.state.retry_in is None


def test_exhausted_budget_is_failed_with_retries_exhausted() -> None:
    core: ClientCore[object] = ClientCore(reconnector=reconnector(max_attempts=2))
    last = retryable("refused", status=503)
    decisions = []
    for _ in range(3):
        core.attempt()
        decisions.append(core.lost(last))

    assert [d.delay for d in decisions] == [1.0, 2.0, None]
    final = decisions[-1].error
    assert isinstance(final, RetriesExhausted)
    assert final.attempts == 3
    assert final.last_error is last
    assert final.retryable is False
    assert final.status == 503
    assert "gave up after 3 connection attempts" in str(final)
    assert "max_reconnect_attempts" in str(final)
    assert core.state.phase is Phase.FAILED
    assert core.state.error == str(final)


def test_restart_after_failure_gives_a_fresh_budget() -> None:
    core: ClientCore[object] = ClientCore(reconnector=reconnector(max_attempts=0))
    core.attempt()
    core.lost(retryable())

    core.restart()
    state = core.attempt()

    assert state.attempt == 0
    assert core.reconnector.attempts == 1


def test_stopped_and_closed_phases() -> None:
    core = connected_core()

    assert core.stopped().phase is Phase.DISCONNECTED
    assert core.reconnector.retries == 0
    assert core.closed().phase is Phase.CLOSED


def test_opened_resets_the_budget_only_after_a_healthy_connection() -> None:
    clock = FakeClock()
    core: ClientCore[object] = ClientCore(
        reconnector=reconnector(clock=clock, reset_after=5.0, max_attempts=None)
    )
    for _ in range(3):
        core.attempt()
        core.lost(retryable())

    core.attempt()
    core.opened()
    clock.advance(5.0)
    decision = core.lost(retryable())

    assert decision.delay == 1.0
    assert core.state.attempt == 1


# == ConnectionState ============================================================================


@pytest.mark.parametrize(
    ("state", "connected", "connecting", "reconnecting", "authenticating", "failed"),
    [
        (ConnectionState(), False, False, False, False, False),
        (ConnectionState(Phase.CONNECTING), False, True, False, False, False),
        (ConnectionState(Phase.CONNECTING, attempt=2), False, True, True, False, False),
        (ConnectionState(Phase.AUTHENTICATING), False, True, False, True, False),
        (ConnectionState(Phase.AUTHENTICATING, attempt=1), False, True, True, True, False),
        (ConnectionState(Phase.CONNECTED), True, False, False, False, False),
        (ConnectionState(Phase.WAITING, attempt=1, retry_in=1.0), False, False, True, False, False),
        (ConnectionState(Phase.FAILED, error="x"), False, False, False, False, True),
        (ConnectionState(Phase.CLOSED), False, False, False, False, False),
    ],
)
def test_connection_state_properties(
    state: ConnectionState,
    connected: bool,
    connecting: bool,
    reconnecting: bool,
    authenticating: bool,
    failed: bool,
) -> None:
    assert state.connected is connected
    assert state.connecting is connecting
    assert state.reconnecting is reconnecting
    assert state.authenticating is authenticating
    assert state.failed is failed


def test_connection_state_is_immutable() -> None:
    state = ConnectionState(Phase.CONNECTED)

    with pytest.raises(dataclasses.FrozenInstanceError):
        state.phase = Phase.FAILED  # type: ignore[misc]

    assert state.phase is Phase.CONNECTED


def test_connection_state_str_describes_it() -> None:
    state = ConnectionState(
        Phase.WAITING, error="refused", attempt=2, retry_in=1.5, close_code=1006
    )

    assert str(state) == "waiting, attempt 2, retry in 1.50s, close code 1006, error: refused"
    assert str(ConnectionState()) == "disconnected"
