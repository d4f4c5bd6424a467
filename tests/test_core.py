"""The sans-I/O core: backoff and the retry budget (its policy, queues, asks and states:
tests/test_core_policy.py, test_core_asks.py, test_core_states.py).

No sockets, no sleeps: time and randomness are injected.
"""

from __future__ import annotations

import pytest

from nexus_reactive.core import Backoff, ClientCore, Outgoing, Reconnector
from nexus_reactive.errors import AuthenticationError, NexusConnectionError


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def no_jitter() -> float:
    return 0.0


def retryable(text: str = "connection lost", **kwargs: object) -> NexusConnectionError:
    return NexusConnectionError(text, retryable=True, **kwargs)  # type: ignore[arg-type]


def fatal() -> AuthenticationError:
    return AuthenticationError("bad key", status=401)


def reconnector(**kwargs: object) -> Reconnector:
    options: dict[str, object] = {
        "backoff": Backoff(initial=1.0, maximum=30.0, jitter=0.5),
        "clock": FakeClock(),
        "random": no_jitter,
    }
    options.update(kwargs)
    return Reconnector(**options)  # type: ignore[arg-type]


def drain(core: ClientCore[object]) -> list[Outgoing]:
    items = []
    while (item := core.next_outgoing()) is not None:
        items.append(item)
    return items


# == backoff ===========================================================================


@pytest.mark.parametrize(
    ("retry", "expected"),
    [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (6, 10.0), (50, 10.0)],
)
def test_backoff_grows_as_interval_times_two_to_the_n_up_to_the_cap(
    retry: int, expected: float
) -> None:
    backoff = Backoff(initial=0.5, maximum=10.0, jitter=0.5)

    assert backoff.delay(retry, no_jitter) == expected


def test_backoff_delays_never_decrease_without_jitter() -> None:
    backoff = Backoff(initial=0.1, maximum=7.0, jitter=0.0)
    delays = [backoff.delay(n) for n in range(20)]

    assert delays == sorted(delays)
    assert delays[0] == pytest.approx(0.1)
    assert delays[-1] == 7.0


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("retry", [0, 3, 10])
def test_backoff_jitter_stays_within_d_times_one_minus_j_and_d(jitter: float, retry: int) -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=jitter)
    full = min(30.0, 2.0**retry)

    highest = backoff.delay(retry, lambda: 0.0)
    lowest = backoff.delay(retry, lambda: 0.999)

    assert highest == full
    assert lowest == pytest.approx(full * (1 - jitter * 0.999))
    assert full * (1 - jitter) <= lowest <= highest


def test_backoff_jitter_uses_the_random_source() -> None:
    backoff = Backoff(initial=4.0, maximum=30.0, jitter=0.5)

    assert backoff.delay(0, lambda: 0.5) == pytest.approx(3.0)


@pytest.mark.parametrize("retry", [64, 65, 1_000, 10**9, 10**100])
def test_backoff_huge_retry_numbers_do_not_overflow(retry: int) -> None:
    backoff = Backoff(initial=1.0, maximum=30.0, jitter=0.5)

    assert backoff.delay(retry, no_jitter) == 30.0
    assert 15.0 <= backoff.delay(retry, lambda: 0.999) <= 30.0


def test_backoff_tiny_initial_still_reaches_the_cap_for_huge_retries() -> None:
    backoff = Backoff(initial=1e-3, maximum=5.0, jitter=0.0)

    assert backoff.delay(10**6) == 5.0


# == Reconnector: the retry budget ======================================================


def test_reconnector_counts_retries_and_uses_the_backoff_schedule() -> None:
    r = reconnector(max_attempts=None)

    delays = [r.next_delay(retryable()) for _ in range(5)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert r.retries == 5


def test_reconnector_delays_use_the_injected_random_source() -> None:
    r = reconnector(random=lambda: 0.999)

    delay = r.next_delay(retryable())

    assert delay == pytest.approx(1.0 * (1 - 0.5 * 0.999))


def test_reconnector_max_attempts_counts_retries_after_the_first_failure() -> None:
    r = reconnector(max_attempts=2)
    attempts = 0
    decisions = []

    while True:
        r.attempt_started()
        attempts += 1
        delay = r.next_delay(retryable())
        decisions.append(delay)
        if delay is None:
            break

    assert attempts == 3  # the first attempt and two retries
    assert r.attempts == 3
    assert decisions == [1.0, 2.0, None]
    assert r.exhausted is True


def test_reconnector_max_attempts_zero_gives_up_at_the_first_failure() -> None:
    r = reconnector(max_attempts=0)

    assert r.next_delay(retryable()) is None
    assert r.exhausted is True


def test_reconnector_without_limit_retries_forever() -> None:
    r = reconnector(max_attempts=None)

    for _ in range(1000):
        r.attempt_started()
        delay = r.next_delay(retryable())
        assert delay is not None
        assert 0 < delay <= 30.0

    assert r.exhausted is False
    assert r.retries == 1000


def test_reconnector_fatal_error_gives_up_at_once_without_exhausting() -> None:
    r = reconnector(max_attempts=10)

    assert r.next_delay(fatal()) is None
    assert r.exhausted is False
    assert r.retries == 0


def test_reconnector_exhausted_is_cleared_by_the_next_decision() -> None:
    r = reconnector(max_attempts=0)
    r.next_delay(retryable())

    r.next_delay(fatal())

    assert r.exhausted is False


def test_reconnector_retry_after_raises_the_delay() -> None:
    r = reconnector()

    assert r.next_delay(retryable(retry_after=7.5)) == 7.5


def test_reconnector_retry_after_shorter_than_backoff_keeps_the_backoff() -> None:
    r = reconnector()
    r.next_delay(retryable())
    r.next_delay(retryable())

    assert r.next_delay(retryable(retry_after=0.5)) == 4.0


def test_reconnector_resets_after_a_healthy_connection() -> None:
    clock = FakeClock()
    r = reconnector(clock=clock, reset_after=10.0, max_attempts=None)
    for _ in range(4):
        r.next_delay(retryable())
    assert r.retries == 4

    r.opened()
    clock.advance(10.0)
    delay = r.next_delay(retryable())

    assert delay == 1.0  # the schedule starts over
    assert r.retries == 1  # the counter went back to 0, then counted this retry


def test_reconnector_does_not_reset_when_the_connection_dropped_quickly() -> None:
    clock = FakeClock()
    r = reconnector(clock=clock, reset_after=10.0, max_attempts=None)
    for _ in range(4):
        r.next_delay(retryable())

    r.opened()
    clock.advance(9.9)
    delay = r.next_delay(retryable())

    assert delay == 16.0
    assert r.retries == 5


def test_reconnector_reset_needs_a_new_opened_each_time() -> None:
    clock = FakeClock()
    r = reconnector(clock=clock, reset_after=10.0, max_attempts=None)
    r.opened()
    clock.advance(60.0)
    r.next_delay(retryable())
    r.next_delay(retryable())  # no opened() in between: a failed attempt

    assert r.retries == 2


def test_reconnector_budget_lets_an_accept_then_drop_server_exhaust_it() -> None:
    clock = FakeClock()
    r = reconnector(clock=clock, reset_after=10.0, max_attempts=3)
    delays = []
    for _ in range(4):
        r.attempt_started()
        r.opened()
        clock.advance(0.1)
        delays.append(r.next_delay(retryable()))

    assert delays == [1.0, 2.0, 4.0, None]
    assert r.exhausted is True


def test_should_reconnect_hook_can_retry_a_fatal_error() -> None:
    seen: list[NexusConnectionError] = []

    def always(error: NexusConnectionError) -> bool:
        seen.append(error)
        return True

    r = reconnector(should_reconnect=always)
    error = fatal()

    assert r.next_delay(error) == 1.0
    assert seen == [error]


def test_should_reconnect_hook_can_stop_a_retryable_error() -> None:
    r = reconnector(should_reconnect=lambda error: False)

    assert r.next_delay(retryable()) is None
    assert r.exhausted is False


def test_should_reconnect_hook_does_not_lift_the_budget() -> None:
    r = reconnector(should_reconnect=lambda error: True, max_attempts=1)

    assert r.next_delay(fatal()) == 1.0
    assert r.next_delay(fatal()) is None
    assert r.exhausted is True
