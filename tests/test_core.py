"""The sans-I/O core: backoff, retry budget, failure policy, outbox, pending asks, state.

No sockets, no sleeps: time and randomness are injected.
"""

from __future__ import annotations

import dataclasses

import pytest

from nexus_reactive.core import (
    DEFAULT_REMEMBER,
    Backoff,
    ClientCore,
    ConnectionState,
    Outbox,
    Outgoing,
    PendingTable,
    Phase,
    RecentIds,
    Reconnector,
    Reply,
    TokenBucket,
    close_error,
    http_error,
)
from nexus_reactive.core.meaning import (
    challenge_error,
    connection_retry_after,
    handshake_error,
    rate_limit_wait,
)
from nexus_reactive.errors import (
    AuthenticationError,
    NexusConnectionError,
    OutboxFull,
    ProtocolError,
    RetriesExhausted,
)


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


# == policy: fatal or retryable ===========================================================


@pytest.mark.parametrize("code", [1000, 1001, 1006, 1009, 1011, 1012, 1013, 4429, 4000, 3000])
def test_close_codes_are_retryable(code: int) -> None:
    error = close_error(code)

    assert type(error) is NexusConnectionError
    assert error.retryable is True
    assert error.close_code == code
    assert str(code) in str(error)


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        (1001, "going away"),
        (1006, "without a close frame"),
        (1009, "too big"),
        (1011, "internal error"),
        (1012, "restarting"),
        (1013, "try again later"),
        (4429, "rate limited"),
    ],
)
def test_close_error_says_what_the_code_means(code: int, meaning: str) -> None:
    assert meaning in str(close_error(code))


def test_close_error_includes_the_peer_reason() -> None:
    assert "maintenance window" in str(close_error(1012, "maintenance window"))


def test_close_without_a_code_is_a_retryable_lost_connection() -> None:
    error = close_error(None)

    assert error.retryable is True
    assert error.close_code is None
    assert "connection lost" in str(error)


def test_close_4429_carries_retry_after() -> None:
    error = close_error(4429, retry_after=12.0)

    assert error.retryable is True
    assert error.retry_after == 12.0


@pytest.mark.parametrize("code", [4401, 4403])
def test_close_4401_and_4403_are_fatal_authentication_errors(code: int) -> None:
    error = close_error(code, "nope")

    assert isinstance(error, AuthenticationError)
    assert error.retryable is False
    assert error.close_code == code
    assert "check the API key" in str(error)
    assert "Not retrying" in str(error)


@pytest.mark.parametrize("status", [401, 403])
def test_http_401_and_403_are_fatal_authentication_errors(status: int) -> None:
    error = http_error(status)

    assert isinstance(error, AuthenticationError)
    assert error.retryable is False
    assert error.status == status
    assert str(status) in str(error)
    assert "Not retrying" in str(error)


def test_http_401_says_how_to_pass_the_key() -> None:
    text = str(http_error(401))

    assert "api_key=" in text
    assert "NEXUS_API_KEY" in text


@pytest.mark.parametrize("retry_after", [None, 30.0])
def test_http_429_is_retryable_with_retry_after(retry_after: float | None) -> None:
    error = http_error(429, retry_after)

    assert error.retryable is True
    assert error.status == 429
    assert error.retry_after == retry_after
    assert "rate limited" in str(error)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599, 408])
def test_http_5xx_and_408_are_retryable(status: int) -> None:
    error = http_error(status)

    assert type(error) is NexusConnectionError
    assert error.retryable is True
    assert error.status == status


@pytest.mark.parametrize("status", [400, 404, 405, 426])
def test_other_http_4xx_are_fatal_and_point_at_the_url(status: int) -> None:
    error = http_error(status)

    assert error.retryable is False
    assert not isinstance(error, AuthenticationError)
    assert error.status == status
    assert "check the URL" in str(error)


# == Outbox ================================================================================


def test_outbox_is_first_in_first_out() -> None:
    outbox = Outbox(10)
    for i in range(5):
        outbox.put(Outgoing(b"%d" % i))

    popped = [outbox.pop() for _ in range(5)]

    assert [item.frame for item in popped if item] == [b"0", b"1", b"2", b"3", b"4"]
    assert outbox.pop() is None
    assert len(outbox) == 0


def test_outbox_full_raises_and_queues_nothing() -> None:
    outbox = Outbox(2)
    outbox.put(Outgoing(b"a"))
    outbox.put(Outgoing(b"b"))

    with pytest.raises(OutboxFull, match="outbox_limit"):
        outbox.put(Outgoing(b"c"))

    assert len(outbox) == 2
    assert outbox.clear() == [Outgoing(b"a"), Outgoing(b"b")]


def test_outbox_accepts_again_once_drained() -> None:
    outbox = Outbox(1)
    outbox.put(Outgoing(b"a"))
    outbox.pop()

    outbox.put(Outgoing(b"b"))

    assert outbox.pop() == Outgoing(b"b")


def test_outbox_put_front_keeps_order_and_ignores_the_limit() -> None:
    outbox = Outbox(2)
    outbox.put(Outgoing(b"c"))
    outbox.put(Outgoing(b"d"))

    outbox.put_front(Outgoing(f) for f in (b"a", b"b"))

    assert len(outbox) == 4
    assert [item.frame for item in outbox.clear()] == [b"a", b"b", b"c", b"d"]


def test_outbox_clear_empties_it() -> None:
    outbox = Outbox(5)
    outbox.put(Outgoing(b"x", "id-1"))

    assert outbox.clear() == [Outgoing(b"x", "id-1")]
    assert len(outbox) == 0


# == PendingTable ==========================================================================


def test_pending_table_first_reply_settles_then_duplicates_are_recognised() -> None:
    table: PendingTable[str] = PendingTable()
    entry = table.add("a", b"frame", "waiter")

    assert table.settle("a") == (Reply.FIRST, entry)
    assert "a" not in table
    assert table.settle("a") == (Reply.DUPLICATE, None)
    assert table.settle("a") == (Reply.DUPLICATE, None)


def test_pending_table_forgets_the_oldest_answered_ids_beyond_remember() -> None:
    table: PendingTable[None] = PendingTable(remember=2)
    for ask_id in ("a", "b", "c"):
        table.add(ask_id, b"")
        table.settle(ask_id)

    assert table.settle("c")[0] is Reply.DUPLICATE
    assert table.settle("b")[0] is Reply.DUPLICATE
    assert table.settle("a")[0] is Reply.UNSOLICITED  # forgotten: treated as new


def test_pending_table_drain_removes_everything_in_order() -> None:
    table: PendingTable[None] = PendingTable()
    for ask_id in ("x", "y", "z"):
        table.add(ask_id, ask_id.encode())

    drained = table.drain()

    assert [ask_id for ask_id, _ in drained] == ["x", "y", "z"]
    assert len(table) == 0


# == ClientCore: asks =======================================================================


def connected_core(**kwargs: object) -> ClientCore[object]:
    core: ClientCore[object] = ClientCore(
        reconnector=reconnector(max_attempts=None),
        **kwargs,  # type: ignore[arg-type]
    )
    core.attempt()
    core.opened()
    return core


def test_submit_ask_then_next_outgoing_marks_it_on_the_wire() -> None:
    core = connected_core()
    waiter = object()

    entry = core.submit_ask("a1", b"ask-frame", waiter)

    assert entry.on_wire is False
    assert entry.waiter is waiter
    assert core.next_outgoing() == Outgoing(b"ask-frame", "a1")
    assert entry.on_wire is True
    assert core.next_outgoing() is None


def test_submit_untracked_frame_goes_out_without_an_ask_id() -> None:
    core = connected_core()

    core.submit(b"auth-frame")

    assert core.next_outgoing() == Outgoing(b"auth-frame", None)
    assert len(core.pending) == 0


def test_reply_is_first_then_duplicate_for_the_same_id() -> None:
    core = connected_core()
    entry = core.submit_ask("a1", b"f", "waiter")
    core.next_outgoing()

    assert core.reply("a1") == (Reply.FIRST, entry)
    assert core.reply("a1") == (Reply.DUPLICATE, None)


def test_reply_for_an_unknown_id_is_unsolicited() -> None:
    core = connected_core()

    assert core.reply("never-asked") == (Reply.UNSOLICITED, None)


def test_reply_after_abandon_is_late_once_then_duplicate() -> None:
    core = connected_core()
    entry = core.submit_ask("a1", b"f")
    core.next_outgoing()

    assert core.abandon("a1") is entry
    assert core.reply("a1") == (Reply.LATE, None)
    assert core.reply("a1") == (Reply.DUPLICATE, None)
    assert core.reply("a1") == (Reply.DUPLICATE, None)
    assert core.abandon("a1") is None


def test_an_id_no_ask_had_is_a_push_delivered_as_it_comes_and_not_remembered() -> None:
    core = connected_core()

    assert core.reply("pushed") == (Reply.UNSOLICITED, None)
    assert core.reply("pushed") == (Reply.UNSOLICITED, None)
    assert core.reply("") == (Reply.UNSOLICITED, None)  # a connection-wide error
    assert len(core.pending._answered) == 0 and len(core.pending._abandoned) == 0


def test_drained_asks_are_remembered_as_abandoned() -> None:
    core = connected_core()
    core.submit_ask("a1", b"f", "waiter")
    core.submit_ask("a2", b"g")
    core.pending.drain_where(lambda e: e.waiter is not None)
    core.pending.drain()

    assert core.reply("a1") == (Reply.LATE, None)
    assert core.reply("a2") == (Reply.LATE, None)
    assert core.reply("a1")[0] is Reply.DUPLICATE


def test_abandoned_ids_are_bounded_by_remember() -> None:
    core: ClientCore[object] = ClientCore(remember=3)
    for n in range(10):
        core.submit_ask(f"a{n}", b"f")
        core.abandon(f"a{n}")

    assert len(core.pending._abandoned) == 3
    assert core.reply("a0")[0] is Reply.UNSOLICITED  # forgotten: treated as new
    assert core.reply("a9")[0] is Reply.LATE


# == RecentIds ============================================================================


def test_recent_ids_keep_the_last_limit_in_insertion_order() -> None:
    ids = RecentIds(limit=3)
    for item in "abcd":
        ids.add(item)

    assert len(ids) == 3
    assert "a" not in ids and all(x in ids for x in "bcd")


def test_recent_ids_re_adding_refreshes_and_pop_forgets() -> None:
    ids = RecentIds(limit=2)
    ids.add("a")
    ids.add("b")
    ids.add("a")  # newest again: "b" is now the oldest
    ids.add("c")

    assert "a" in ids and "b" not in ids
    assert ids.pop("a") is True
    assert ids.pop("a") is False
    assert "a" not in ids


def test_recent_ids_memory_stays_bounded_under_a_flood() -> None:
    ids = RecentIds()
    for n in range(5 * DEFAULT_REMEMBER):
        ids.add(f"id-{n}")

    assert len(ids) == DEFAULT_REMEMBER


def test_recent_ids_need_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentIds(0)


def test_asks_settled_or_abandoned_while_queued_are_skipped() -> None:
    core = connected_core()
    core.submit_ask("answered", b"1")
    core.submit_ask("abandoned", b"2")
    core.submit(b"plain")
    core.submit_ask("kept", b"3")

    core.reply("answered")
    core.abandon("abandoned")

    assert drain(core) == [Outgoing(b"plain"), Outgoing(b"3", "kept")]


def test_submit_ask_with_a_pending_id_raises_protocol_error() -> None:
    core = connected_core()
    core.submit_ask("a1", b"first")

    with pytest.raises(ProtocolError, match="a1"):
        core.submit_ask("a1", b"second")

    assert drain(core) == [Outgoing(b"first", "a1")]


def test_an_answered_id_may_be_asked_again() -> None:
    core = connected_core()
    core.submit_ask("a1", b"f")
    core.reply("a1")

    core.submit_ask("a1", b"again")

    assert core.reply("a1")[0] is Reply.FIRST


def test_outbox_full_tracks_nothing() -> None:
    core = connected_core(outbox_limit=1)
    core.submit_ask("a1", b"1")

    with pytest.raises(OutboxFull):
        core.submit_ask("a2", b"2")

    assert "a2" not in core.pending
    assert len(core.pending) == 1
    assert core.reply("a2") == (Reply.UNSOLICITED, None)


def test_unsent_puts_the_frame_back_at_the_head() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.submit(b"2")
    item = core.next_outgoing()
    assert item is not None

    core.unsent(item)

    assert core.pending.get("a1").on_wire is False  # type: ignore[union-attr]
    assert drain(core) == [Outgoing(b"1", "a1"), Outgoing(b"2")]


def test_unsent_untracked_frame_is_requeued_at_the_head() -> None:
    core = connected_core()
    core.submit(b"1")
    core.submit(b"2")
    item = core.next_outgoing()
    assert item is not None

    core.unsent(item)

    assert drain(core) == [Outgoing(b"1"), Outgoing(b"2")]


def test_unsent_ask_that_was_settled_meanwhile_is_dropped() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    item = core.next_outgoing()
    assert item is not None
    core.reply("a1")

    core.unsent(item)

    assert drain(core) == []


# == ClientCore: resending after a reconnect ====================================================


def test_reconnect_resends_unanswered_on_wire_asks_first_in_order() -> None:
    core = connected_core()
    for n in (1, 2, 3, 4):
        core.submit_ask(f"a{n}", b"ask-%d" % n)
    assert len(drain(core)) == 4
    core.reply("a2")  # answered: not sent again
    core.abandon("a4")  # given up: not sent again

    core.lost(retryable())
    core.submit(b"queued-while-down")
    core.submit_ask("a5", b"ask-5")
    core.attempt()
    core.opened()

    assert drain(core) == [
        Outgoing(b"ask-1", "a1"),
        Outgoing(b"ask-3", "a3"),
        Outgoing(b"queued-while-down"),
        Outgoing(b"ask-5", "a5"),
    ]


def test_resend_keeps_the_order_the_asks_were_made_in_with_the_same_frames() -> None:
    core = connected_core()
    frames = {f"ask-{n:02d}": b"frame-%02d" % n for n in range(10)}
    for ask_id, data in frames.items():
        core.submit_ask(ask_id, data)
    drain(core)

    core.lost(retryable())
    core.attempt()
    core.opened()

    assert drain(core) == [Outgoing(data, ask_id) for ask_id, data in frames.items()]
    assert all(core.pending.get(ask_id).on_wire for ask_id in frames)  # type: ignore[union-attr]


def test_resend_ignores_the_outbox_limit() -> None:
    core = connected_core(outbox_limit=2)
    core.submit_ask("a1", b"1")
    core.submit_ask("a2", b"2")
    drain(core)
    core.lost(retryable())
    core.submit(b"3")
    core.submit(b"4")

    core.attempt()
    core.opened()

    assert [item.frame for item in drain(core)] == [b"1", b"2", b"3", b"4"]


def test_asks_requeued_but_not_yet_written_are_not_doubled_by_a_second_reconnect() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    drain(core)
    core.lost(retryable())
    core.attempt()
    core.opened()  # a1 back in the outbox, not yet written

    core.lost(retryable())
    core.attempt()
    core.opened()

    assert drain(core) == [Outgoing(b"1", "a1")]


def test_asks_still_queued_when_the_connection_dropped_go_out_once() -> None:
    core = connected_core()
    core.submit_ask("sent", b"1")
    core.next_outgoing()
    core.submit_ask("queued", b"2")

    core.lost(retryable())
    core.attempt()
    core.opened()

    assert drain(core) == [Outgoing(b"1", "sent"), Outgoing(b"2", "queued")]


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


# == ClientCore.resend: the server asked to retry one ask later ==============================


def test_resend_puts_a_pending_ask_back_at_the_head() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.next_outgoing()
    core.submit(b"2")

    assert core.resend("a1") is True

    assert core.pending.get("a1").on_wire is False  # type: ignore[union-attr]
    assert drain(core) == [Outgoing(b"1", "a1"), Outgoing(b"2")]


def test_resend_of_an_unknown_or_settled_ask_does_nothing() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.next_outgoing()
    core.reply("a1")

    assert core.resend("a1") is False
    assert core.resend("never") is False
    assert drain(core) == []


def test_resend_then_reconnect_sends_the_ask_once() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.next_outgoing()
    core.resend("a1")

    core.lost(retryable())
    core.attempt()
    core.opened()

    assert drain(core) == [Outgoing(b"1", "a1")]


# == TokenBucket: pacing outgoing messages ====================================================


def test_token_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(2.0, burst=3, now=0.0)

    waits = [bucket.take(0.0) for _ in range(5)]

    assert waits == [0.0, 0.0, 0.0, 0.5, 1.0]


def test_token_bucket_refills_over_time_up_to_the_burst() -> None:
    bucket = TokenBucket(2.0, burst=3, now=0.0)
    for _ in range(3):
        bucket.take(0.0)

    assert bucket.take(0.5) == 0.0  # one token came back in half a second
    assert bucket.take(0.5) == 0.5
    assert [bucket.take(100.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]  # capped at 3


def test_token_bucket_default_burst_is_the_rate_rounded_down_at_least_one() -> None:
    assert TokenBucket(5.0).burst == 5.0
    assert TokenBucket(0.5).burst == 1.0
    assert TokenBucket(None).burst == 1.0


def test_token_bucket_without_rate_never_waits() -> None:
    bucket = TokenBucket(None)

    assert [bucket.take(0.0) for _ in range(1000)] == [0.0] * 1000


def test_token_bucket_pause_until_delays_even_without_rate() -> None:
    bucket = TokenBucket(None)
    bucket.pause_until(5.0)

    assert bucket.take(1.0) == 4.0
    assert bucket.take(6.0) == 0.0


def test_token_bucket_pause_only_ever_extends() -> None:
    bucket = TokenBucket(None)
    bucket.pause_until(5.0)
    bucket.pause_until(2.0)

    assert bucket.take(0.0) == 5.0


def test_token_bucket_pause_then_rate_adds_up() -> None:
    bucket = TokenBucket(1.0, burst=1, now=0.0)
    bucket.pause_until(10.0)

    assert bucket.take(0.0) == 10.0
    assert bucket.take(0.0) == 11.0


# == meaning: rate limits, challenges, handshake errors ======================================


def test_a_rate_limited_reply_waits_what_the_server_says_or_the_default() -> None:
    assert rate_limit_wait("rate_limited", 2.5, default=1.0) == 2.5
    assert rate_limit_wait("rate_limited", None, default=1.0) == 1.0
    assert rate_limit_wait("rate_limited", -3.0, default=1.0) == 0.0
    assert rate_limit_wait("bad_request", 2.5, default=1.0) is None  # an answer


def test_only_a_connection_wide_error_sets_the_reconnect_wait() -> None:
    assert connection_retry_after("", 4.0) == 4.0
    assert connection_retry_after("ask-1", 4.0) is None
    assert connection_retry_after("", None) is None


def test_a_challenge_is_fatal_without_a_key_and_ignored_once_authenticated() -> None:
    error = challenge_error(has_signing_key=False, authenticated=False)
    assert isinstance(error, AuthenticationError) and not error.retryable
    assert "signing_key" in str(error)
    assert challenge_error(has_signing_key=True, authenticated=True) is None


def test_handshake_errors_rejecting_the_key_are_fatal_others_retried() -> None:
    for code in ("auth_failed", "unauthenticated"):
        fatal = handshake_error(code, "no", None)
        assert isinstance(fatal, AuthenticationError) and not fatal.retryable
    retried = handshake_error("rate_limited", "slow down", 3.0)
    assert not isinstance(retried, AuthenticationError)
    assert retried.retryable and retried.retry_after == 3.0


def test_early_stream_pieces_are_bounded_and_the_overflow_reported_once() -> None:
    """A server streaming indices 1..N and never 0 must not grow memory without bound:
    at most MAX_EARLY_CHUNKS pieces wait; the rest are dropped, reported once."""
    from nexus_reactive.core.connection import MAX_EARLY_CHUNKS

    core: ClientCore[object] = ClientCore()
    core.submit_ask("a1", b"f")
    for index in range(1, MAX_EARLY_CHUNKS + 1):
        assert core.chunk("a1", index, index) == []
    with pytest.raises(ProtocolError, match="ahead of the missing piece 0"):
        core.chunk("a1", MAX_EARLY_CHUNKS + 1, "x")
    for index in range(MAX_EARLY_CHUNKS + 2, 3 * MAX_EARLY_CHUNKS):
        assert core.chunk("a1", index, index) == []  # dropped quietly after the report
    entry = core.pending.get("a1")
    assert entry is not None and entry.early is not None
    assert len(entry.early) == MAX_EARLY_CHUNKS
    # The gap fills: the kept pieces come out in order.
    assert core.chunk("a1", 0, 0) == list(range(MAX_EARLY_CHUNKS + 1))
