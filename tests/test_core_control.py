"""Connection control in the pure core, without sockets: the lazy connection's rule
(:mod:`nexus_reactive.core.demand`) and the states ``reconnect()`` and ``lazy=True``
publish (``ClientCore.restart``, ``attempt``, ``idle``)."""

from __future__ import annotations

import itertools

import pytest

from nexus_reactive.core import Backoff, ClientCore, ConnectionState, Phase, Reconnector
from nexus_reactive.core.demand import (
    REASON_DEMAND,
    REASON_RECONNECT,
    LazyRule,
    Step,
    idle_reason,
)
from nexus_reactive.errors import AuthenticationError, NexusConnectionError, RetriesExhausted

# == the lazy rule ===============================================================================


def test_a_holder_opens_a_stopped_connection() -> None:
    rule = LazyRule(grace=30)
    assert rule.step(work=False, running=False) is Step.NOTHING  # nothing needs it
    rule.hold()
    assert rule.step(work=False, running=False) is Step.OPEN
    assert not rule.armed


def test_work_alone_opens_it() -> None:
    rule = LazyRule(grace=30)
    assert rule.step(work=True, running=False) is Step.OPEN


def test_the_grace_runs_while_the_connection_runs_unneeded() -> None:
    rule = LazyRule(grace=30)
    rule.hold()
    assert rule.step(work=False, running=True) is Step.NOTHING
    assert not rule.armed
    rule.release()
    assert rule.step(work=False, running=True) is Step.NOTHING
    assert rule.armed
    # Work keeps it open: the timer stops, and starts again once the work is done.
    rule.step(work=True, running=True)
    assert not rule.armed
    rule.step(work=False, running=True)
    assert rule.armed


def test_a_new_holder_disarms_the_grace() -> None:
    rule = LazyRule(grace=30)
    rule.step(work=False, running=True)
    assert rule.armed
    rule.hold()
    assert rule.step(work=False, running=True) is Step.NOTHING
    assert not rule.armed


def test_the_grace_expiring_closes_only_an_unneeded_running_connection() -> None:
    rule = LazyRule(grace=30)
    rule.step(work=False, running=True)
    assert rule.expired(work=False, running=True) is Step.CLOSE
    assert not rule.armed
    # Needed again, or stopped meanwhile, or suspended: nothing to close.
    assert rule.expired(work=True, running=True) is Step.NOTHING
    assert rule.expired(work=False, running=False) is Step.NOTHING
    rule.hold()
    assert rule.expired(work=False, running=True) is Step.NOTHING
    rule.release()
    rule.suspended = True
    assert rule.expired(work=False, running=True) is Step.NOTHING


def test_suspended_demand_opens_nothing_and_times_nothing() -> None:
    rule = LazyRule(grace=30, suspended=True)
    rule.hold()
    assert rule.step(work=True, running=False) is Step.NOTHING
    assert rule.step(work=False, running=True) is Step.NOTHING
    assert not rule.armed
    rule.suspended = False
    assert rule.step(work=False, running=False) is Step.OPEN


def test_a_stopped_connection_needs_no_timer() -> None:
    rule = LazyRule(grace=30)
    rule.step(work=False, running=True)
    assert rule.armed
    assert rule.step(work=False, running=False) is Step.NOTHING
    assert not rule.armed


def test_releasing_more_than_was_held_is_a_bug_that_raises() -> None:
    rule = LazyRule(grace=30)
    rule.hold()
    rule.release()
    with pytest.raises(ValueError, match="released more holders"):
        rule.release()
    assert rule.holders == 0


@pytest.mark.parametrize(
    ("holders", "work", "running", "suspended"),
    list(itertools.product((0, 1, 3), (False, True), (False, True), (False, True))),
)
def test_every_combination_agrees_with_the_rule_in_words(
    holders: int, work: bool, running: bool, suspended: bool
) -> None:
    rule = LazyRule(grace=30, holders=holders, suspended=suspended)
    needed = holders > 0 or work

    step = rule.step(work=work, running=running)

    assert (step is Step.OPEN) == (needed and not running and not suspended)
    assert rule.armed == (running and not needed and not suspended)
    assert rule.expired(work=work, running=running) is (
        Step.CLOSE if running and not needed and not suspended else Step.NOTHING
    )


def test_the_idle_reason_names_the_grace_and_lazy() -> None:
    text = idle_reason(2.5)
    assert "2.5s" in text and "lazy=True" in text


# == the states of reconnect() and lazy=True ======================================================


def core(max_attempts: int | None = 3) -> ClientCore[None]:
    return ClientCore(
        reconnector=Reconnector(
            backoff=Backoff(initial=1, maximum=1, jitter=0), max_attempts=max_attempts
        )
    )


def test_restart_with_a_reason_previews_the_attempt_it_starts() -> None:
    client = core()
    client.attempt()
    client.lost(NexusConnectionError("refused"))
    assert client.state.phase is Phase.WAITING and client.state.attempt == 1

    preview = client.restart(REASON_RECONNECT)
    attempt = client.attempt()

    # The same state twice: published once. The last failure is not why this one runs.
    assert preview == attempt == ConnectionState(Phase.CONNECTING, reason=REASON_RECONNECT)
    assert attempt.error is None and attempt.attempt == 0
    assert client.reconnector.attempts == 1


def test_the_reason_lasts_one_attempt_then_failures_speak() -> None:
    client = core()
    client.restart(REASON_DEMAND)
    client.attempt()
    client.lost(NexusConnectionError("refused"))
    retry = client.attempt()
    assert retry.reason is None and retry.error == "refused" and retry.attempt == 1


def test_restart_resets_the_budget_after_it_ran_out() -> None:
    client = core(max_attempts=1)
    client.attempt()
    client.lost(NexusConnectionError("down"))
    client.attempt()
    decision = client.lost(NexusConnectionError("down"))
    assert decision.delay is None and isinstance(decision.error, RetriesExhausted)

    client.restart(REASON_RECONNECT)
    client.attempt()

    assert client.lost(NexusConnectionError("down")).delay is not None  # a fresh budget


def test_restart_after_a_fatal_error_tries_again() -> None:
    client = core()
    client.attempt()
    assert client.lost(AuthenticationError("401")).delay is None
    assert client.state.failed

    state = client.restart(REASON_RECONNECT)

    assert state.phase is Phase.CONNECTING and state.error is None


def test_restart_without_a_reason_keeps_the_state_and_the_last_error() -> None:
    client = core()
    client.attempt()
    client.lost(AuthenticationError("401"))
    before = client.state

    assert client.restart() == before
    assert client.attempt().error == before.error  # connect() after a failure, as before


def test_idle_is_not_an_error_and_resets_the_count() -> None:
    client = core()
    client.attempt()
    client.lost(NexusConnectionError("refused"))

    state = client.idle(idle_reason(30))

    assert state == ConnectionState(Phase.IDLE, reason=idle_reason(30))
    assert state.idle and not state.connected and not state.failed and not state.reconnecting
    assert client.reconnector.retries == 0
    assert "idle" in str(state) and "30s" in str(state)


def test_stopping_and_closing_forget_the_reason() -> None:
    client = core()
    client.restart(REASON_RECONNECT)
    assert client.stopped().reason is None
    client.restart(REASON_RECONNECT)
    assert client.closed().reason is None


def test_the_state_in_words_says_the_reason() -> None:
    text = str(ConnectionState(Phase.CONNECTING, reason=REASON_RECONNECT))
    assert text == "connecting, reconnect() was called"
    assert "Idle" in ConnectionState(Phase.IDLE)._repr_html_()
