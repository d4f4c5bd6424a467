"""The sans-I/O core's judgements and queues: fatal or retryable, the outbox, pending asks,
the token bucket, and what rate limits, challenges and handshake errors mean.

No sockets, no sleeps: time and randomness are injected.
"""

from __future__ import annotations

import pytest

from nexus_reactive.core import (
    ClientCore,
    Outbox,
    Outgoing,
    PendingTable,
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
)

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


def test_pending_table_first_is_settle_for_an_id_known_pending() -> None:
    table: PendingTable[str] = PendingTable(remember=2)
    entry = table.add("a", b"frame", "waiter")

    assert table.first("a") is entry
    assert "a" not in table
    assert table.settle("a") == (Reply.DUPLICATE, None)  # remembered as answered
    table.add("b", b"")
    table.add("c", b"")
    table.first("b")
    table.first("c")
    assert table.settle("a") == (Reply.UNSOLICITED, None)  # past remember: forgotten
    table.add("c", b"again")  # an id used again after its answer: refreshed
    table.first("c")
    assert table.settle("c") == (Reply.DUPLICATE, None)
    with pytest.raises(KeyError):
        table.first("never")


def test_pending_table_drain_removes_everything_in_order() -> None:
    table: PendingTable[None] = PendingTable()
    for ask_id in ("x", "y", "z"):
        table.add(ask_id, ask_id.encode())

    drained = table.drain()

    assert [ask_id for ask_id, _ in drained] == ["x", "y", "z"]
    assert len(table) == 0


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
