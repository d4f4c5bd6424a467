"""The sans-I/O core's asks: ClientCore asking and answering, recent ids, resending after a
reconnect and a resend the server asked for.

No sockets, no sleeps: time and randomness are injected.
"""

from __future__ import annotations

import pytest

from nexus_reactive.core import DEFAULT_REMEMBER, ClientCore, Outgoing, RecentIds, Reply
from nexus_reactive.errors import OutboxFull, ProtocolError

from .test_core import drain, reconnector, retryable

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


def test_take_outgoing_is_next_outgoing_repeated_up_to_a_limit() -> None:
    core = connected_core()
    entries = [core.submit_ask(f"a{i}", f"f{i}".encode()) for i in range(5)]
    core.submit(b"plain")
    core.abandon("a1")  # abandoned while queued: skipped, as next_outgoing skips it

    taken = core.take_outgoing(3)

    assert taken == [Outgoing(b"f0", "a0"), Outgoing(b"f2", "a2"), Outgoing(b"f3", "a3")]
    on_wire = [(e.on_wire, e.sends) for e in entries]
    assert on_wire == [(True, 1), (False, 0), (True, 1), (True, 1), (False, 0)]
    assert core.take_outgoing(10) == [Outgoing(b"f4", "a4"), Outgoing(b"plain", None)]
    assert core.take_outgoing(10) == []


def test_untake_puts_frames_back_as_if_never_taken() -> None:
    core = connected_core()
    entries = [core.submit_ask(f"a{i}", f"f{i}".encode()) for i in range(3)]
    core.submit(b"plain")
    core.submit_ask("later", b"fl")
    taken = core.take_outgoing(4)
    core.reply("a1")  # answered meanwhile: it does not go back

    core.untake(taken)

    assert [(e.on_wire, e.sends) for e in (entries[0], entries[2])] == [(False, 0), (False, 0)]
    assert core.take_outgoing(10) == [
        Outgoing(b"f0", "a0"),
        Outgoing(b"f2", "a2"),
        Outgoing(b"plain", None),
        Outgoing(b"fl", "later"),
    ]


def test_take_outgoing_past_a_limit_of_asks_settled_while_queued_takes_the_next() -> None:
    # The asks answered while queued fill the first `limit` taken: what follows is
    # taken instead, and the writer never sees an empty batch while frames wait.
    core = connected_core()
    for i in range(5):
        core.submit_ask(f"a{i}", f"f{i}".encode())
    core.submit(b"plain")
    for i in range(3):
        core.reply(f"a{i}")

    assert core.take_outgoing(2) == [Outgoing(b"f3", "a3"), Outgoing(b"f4", "a4")]
    assert core.take_outgoing(2) == [Outgoing(b"plain", None)]
    assert core.take_outgoing(2) == []


def test_sends_counts_each_attempt_once_whichever_way_the_ask_went_back() -> None:
    core = connected_core()
    entry = core.submit_ask("a", b"f")
    attempts = [entry.sends]
    core.untake(core.take_outgoing(10))  # not written after all: no attempt
    attempts.append(entry.sends)
    item = core.take_outgoing(10)[0]
    attempts.append(entry.sends)
    core.unsent(item)  # the write failed: it counts, and the ask waits again
    attempts.append(entry.sends)
    core.take_outgoing(10)
    attempts.append(entry.sends)
    assert core.resend("a")  # refused for a rate limit
    attempts.append(entry.sends)
    core.take_outgoing(10)
    core.lost(retryable())
    core.attempt()
    core.opened()  # on the wire of a lost connection: goes again
    attempts.append(entry.sends)
    core.take_outgoing(10)
    attempts.append(entry.sends)

    assert attempts == [0, 0, 1, 1, 2, 2, 3, 4]
    assert entry.on_wire is True


def test_first_answers_takes_the_answers_a_read_opens_with_as_first_would() -> None:
    class Answer:
        def __init__(self, ask_id: str) -> None:
            self.id = ask_id

    class Other(Answer):
        pass

    core = connected_core(remember=3)
    core.submit_ask("old", b"o", "w-old")
    core.reply("old")  # answered once: "old" is remembered
    core.submit_ask("old", b"o2", "w-old2")  # the id used again
    core.submit_ask("a", b"a", "w-a")
    core.submit_ask("quiet", b"q")  # fire-and-forget: answered, nobody to settle
    core.submit_ask("b", b"b", "w-b")
    core.submit_ask("c", b"c", "w-c")
    read = [Answer("a"), Answer("quiet"), Answer("old"), Other("b"), Answer("c")]
    waiters: list[object] = []
    answers: list[object] = []

    taken = core.pending.first_answers(read, Answer, waiters, answers)

    assert taken == 3  # stops at the first message of another type
    assert waiters == ["w-a", "w-old2"]
    assert answers == [read[0], read[2]]
    assert sorted(core.pending.lookups()[0]) == ["b", "c"]
    # Remembered as answered, in order; "old", used again, refreshed to the newest.
    assert list(core.pending.lookups()[1]) == ["a", "quiet", "old"]
    assert core.reply("old") == (Reply.DUPLICATE, None)
    # An id not pending stops it too, and changes nothing.
    assert core.pending.first_answers([Answer("zzz"), Answer("c")], Answer, waiters, answers) == 0
    assert "c" in core.pending and len(waiters) == 2


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


def test_an_ask_abandoned_after_its_write_went_back_leaves_the_outbox() -> None:
    # A write cancelled before the transport took the frame puts it back at the head;
    # the caller then abandons the ask: nothing of it may stay counted as waiting.
    core = connected_core()
    core.submit_ask("cancelled", b"1")
    core.submit(b"plain")
    core.submit_ask("kept", b"2")
    item = core.next_outgoing()
    assert item == Outgoing(b"1", "cancelled")
    core.unsent(item)
    assert len(core.outbox) == 3

    core.abandon("cancelled")

    assert len(core.outbox) == 2
    assert drain(core) == [Outgoing(b"plain"), Outgoing(b"2", "kept")]


def test_an_abandoned_ask_behind_others_is_skipped_at_its_turn() -> None:
    core = connected_core()
    core.submit_ask("first", b"1")
    core.submit_ask("gone", b"2")
    core.abandon("gone")
    assert len(core.outbox) == 2  # not at the head: no scan of the outbox per abandon
    assert drain(core) == [Outgoing(b"1", "first")]


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

    assert [item[0] for item in drain(core)] == [b"1", b"2", b"3", b"4"]


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


# == ClientCore.resend: the server asked to retry one ask later ==============================


def test_resend_puts_a_pending_ask_back_at_the_head() -> None:
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.next_outgoing()
    core.submit(b"2")

    assert core.resend("a1") is True

    assert core.pending.get("a1").on_wire is False  # type: ignore[union-attr]
    assert drain(core) == [Outgoing(b"1", "a1"), Outgoing(b"2")]


def test_resend_said_again_before_the_ask_went_again_queues_it_once() -> None:
    # A hostile server repeating "rate_limited" for one id must not grow the outbox.
    core = connected_core()
    core.submit_ask("a1", b"1")
    core.next_outgoing()

    assert all(core.resend("a1") for _ in range(1000))

    assert len(core.outbox) == 1
    assert drain(core) == [Outgoing(b"1", "a1")]
    assert core.resend("a1") is True  # on the wire again: queued again, once
    assert drain(core) == [Outgoing(b"1", "a1")]


def test_several_resends_in_a_row_keep_the_order_the_server_refused_them_in() -> None:
    # One read brings refusals for a1, a2, a3 (the order they went out): they go again
    # in that order, ahead of what was queued meanwhile, not reversed.
    core = connected_core()
    for i in (1, 2, 3):
        core.submit_ask(f"a{i}", f"{i}".encode())
    core.take_outgoing(10)
    core.submit(b"later")

    assert [core.resend(f"a{i}") for i in (1, 2, 3)] == [True, True, True]

    assert drain(core) == [
        Outgoing(b"1", "a1"),
        Outgoing(b"2", "a2"),
        Outgoing(b"3", "a3"),
        Outgoing(b"later"),
    ]


def test_a_resend_after_the_previous_one_went_out_goes_first_again() -> None:
    core = connected_core()
    for i in (1, 2):
        core.submit_ask(f"a{i}", f"{i}".encode())
    core.take_outgoing(10)
    core.submit(b"later")
    core.resend("a1")
    assert core.next_outgoing() == Outgoing(b"1", "a1")  # a1 went again

    core.resend("a2")

    assert drain(core) == [Outgoing(b"2", "a2"), Outgoing(b"later")]


def test_a_resend_goes_first_when_an_equal_frame_of_a_reused_id_waits_at_the_tail() -> None:
    # a1 was refused, went again and was answered; its id and frame are used again by a
    # new ask (send() with the caller's id), queued behind other frames. A later refusal
    # of a2 is not "right after a1": that a1 left the outbox; an equal frame is not it.
    core = connected_core()
    for i in (1, 2):
        core.submit_ask(f"a{i}", f"{i}".encode())
    core.take_outgoing(10)
    core.resend("a1")
    assert core.next_outgoing() == Outgoing(b"1", "a1")  # a1 went again
    core.reply("a1")  # and was answered
    core.submit(b"later")
    core.submit_ask("a1", b"1")  # the id used again, the same frame, at the tail

    core.resend("a2")

    assert drain(core) == [Outgoing(b"2", "a2"), Outgoing(b"later"), Outgoing(b"1", "a1")]


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


def test_drop_unpending_keeps_live_asks_and_other_frames_in_order() -> None:
    core = connected_core()
    for i in range(4):
        core.submit_ask(f"a{i}", f"{i}".encode())
    core.submit(b"plain")
    core.pending.discard("a1")
    core.pending.discard("a3")

    core.drop_unpending()

    assert list(core.outbox.items) == [
        Outgoing(b"0", "a0"),
        Outgoing(b"2", "a2"),
        Outgoing(b"plain"),
    ]


def test_a_write_that_fails_after_the_server_refused_its_ask_queues_it_once() -> None:
    # The writer holds an ask (its write waits to drain) when the server refuses it for
    # its rate limit: resend() queues it again. Then the write fails: unsent() must not
    # queue it a second time, or it goes out twice (and counts one attempt for two).
    core = connected_core()
    entry = core.submit_ask("a", b"f")
    (item,) = core.take_outgoing(10)
    assert core.resend("a")
    core.unsent(item)

    assert core.take_outgoing(10) == [Outgoing(b"f", "a")]
    assert core.take_outgoing(10) == []
    assert entry.sends == 2  # two frames handed to the writer, two attempts
