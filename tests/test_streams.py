"""The library's observables (Stream, ValueStream) and the store's History view."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import HistoricalScheduler, ImmediateScheduler

from nexus_reactive.derived import DerivedPublisher
from nexus_reactive.scheduled import ScheduledView, deliver_on
from nexus_reactive.store import History
from nexus_reactive.streams import Publisher, ValuePublisher

from .schedulers import SlowThreadScheduler
from .waiting import poll


class Recorder:
    """An observer that records everything it is told."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.completed = 0
        self.errors: list[Exception] = []

    def on_next(self, value: Any) -> None:
        self.values.append(value)

    def on_error(self, error: Exception) -> None:
        self.errors.append(error)

    def on_completed(self) -> None:
        self.completed += 1

    def subscribe_to(self, stream: reactivex.Observable[Any], **kwargs: Any) -> Any:
        return stream.subscribe(self.on_next, self.on_error, self.on_completed, **kwargs)


class CountingImmediateScheduler(ImmediateScheduler):
    """Runs actions at once, and counts them: proves the replay went through it."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, action: Any, state: Any = None) -> Any:
        self.scheduled += 1
        return super().schedule(action, state)


def virtual_scheduler() -> HistoricalScheduler:
    return HistoricalScheduler(datetime(2024, 1, 1))


# == Stream ================================================================================


def test_stream_is_hot_late_subscribers_get_only_later_values() -> None:
    pub: Publisher[int] = Publisher("numbers")
    stream = pub.stream
    early, late = Recorder(), Recorder()
    early.subscribe_to(stream)
    pub.emit(1)

    late.subscribe_to(stream)
    pub.emit(2)

    assert early.values == [1, 2]
    assert late.values == [2]


def test_stream_emits_to_several_observers_in_subscription_order() -> None:
    pub: Publisher[str] = Publisher()
    stream = pub.stream
    order: list[str] = []
    stream.subscribe(lambda v: order.append(f"first:{v}"))
    stream.subscribe(lambda v: order.append(f"second:{v}"))
    stream.subscribe(lambda v: order.append(f"third:{v}"))

    pub.emit("x")

    assert order == ["first:x", "second:x", "third:x"]
    assert stream.observer_count == 3


def test_stream_dispose_stops_delivery_to_that_observer_only() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream
    kept, gone = Recorder(), Recorder()
    kept.subscribe_to(stream)
    subscription = gone.subscribe_to(stream)
    pub.emit(1)

    subscription.dispose()
    pub.emit(2)

    assert gone.values == [1]
    assert kept.values == [1, 2]
    assert stream.observer_count == 1


def test_stream_dispose_twice_is_harmless() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream
    subscription = stream.subscribe(lambda v: None)

    subscription.dispose()
    subscription.dispose()

    assert stream.observer_count == 0


def test_a_raising_observer_does_not_starve_the_others(caplog: pytest.LogCaptureFixture) -> None:
    pub: Publisher[int] = Publisher("numbers")
    stream = pub.stream
    before, after = Recorder(), Recorder()
    before.subscribe_to(stream)

    def broken(value: int) -> None:
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)
    after.subscribe_to(stream)

    with caplog.at_level(logging.ERROR, logger="nexus_reactive.streams"):
        pub.emit(1)
        pub.emit(2)

    assert before.values == [1, 2]
    assert after.values == [1, 2]
    assert "a subscriber of numbers raised" in caplog.text


def test_a_raising_observer_is_unsubscribed() -> None:
    # Regression: `o.on_next is sink` never matched (a new bound method per access).
    pub: Publisher[int] = Publisher("numbers")
    stream = pub.stream
    calls: list[int] = []
    other = Recorder()

    def broken(value: int) -> None:
        calls.append(value)
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)
    other.subscribe_to(stream)

    pub.emit(1)
    pub.emit(2)

    assert calls == [1]
    assert stream.observer_count == 1
    assert other.values == [1, 2]


def test_a_raising_observer_is_unsubscribed_even_if_another_left_in_the_same_emit() -> None:
    pub: Publisher[int] = Publisher("numbers")
    stream = pub.stream
    first = Recorder()
    first.subscribe_to(stream.pipe(ops.take(1)))  # unsubscribes itself on its first value
    calls: list[int] = []

    def broken(value: int) -> None:
        calls.append(value)
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)

    pub.emit(1)
    pub.emit(2)

    assert first.values == [1]
    assert calls == [1]


def test_complete_completes_current_observers_and_releases_them() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream
    a, b = Recorder(), Recorder()
    a.subscribe_to(stream)
    b.subscribe_to(stream)

    pub.complete()
    pub.emit(1)
    pub.complete()

    assert (a.completed, b.completed) == (1, 1)
    assert a.values == b.values == []
    assert stream.observer_count == 0


def test_late_subscriber_to_a_completed_stream_completes_at_once() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream
    pub.complete()
    late = Recorder()

    late.subscribe_to(stream)

    assert late.completed == 1
    assert late.values == []
    assert stream.observer_count == 0


def test_an_observer_raising_on_completion_does_not_stop_the_others() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream

    def broken() -> None:
        raise RuntimeError("completion bug")

    stream.subscribe(on_completed=broken)
    other = Recorder()
    other.subscribe_to(stream)

    pub.complete()

    assert other.completed == 1


def test_stream_works_with_reactivex_operators() -> None:
    pub: Publisher[int] = Publisher()
    stream = pub.stream
    out = Recorder()
    out.subscribe_to(stream.pipe(ops.filter(lambda v: v % 2 == 1), ops.map(lambda v: v * 10)))

    for value in range(5):
        pub.emit(value)
    pub.complete()

    assert out.values == [10, 30]
    assert out.completed == 1


# == ValueStream ==============================================================================


def test_value_stream_holds_its_current_value() -> None:
    pub = ValuePublisher("initial")
    stream = pub.stream

    assert stream.value == "initial"
    pub.set("next")
    assert stream.value == "next"


def test_value_stream_replays_the_current_value_synchronously_inside_subscribe() -> None:
    pub = ValuePublisher(0)
    stream = pub.stream
    pub.set(5)
    out = Recorder()

    out.subscribe_to(stream)

    assert out.values == [5]  # already there when subscribe returned
    pub.set(6)
    assert out.values == [5, 6]


def test_value_stream_replays_through_the_given_scheduler() -> None:
    pub = ValuePublisher("A")
    stream = pub.stream
    scheduler = virtual_scheduler()
    out = Recorder()

    out.subscribe_to(stream, scheduler=scheduler)
    assert out.values == []  # not delivered until the scheduler runs

    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A"]


def test_value_stream_replays_through_an_immediate_scheduler() -> None:
    pub = ValuePublisher("A")
    stream = pub.stream
    scheduler = CountingImmediateScheduler()
    out = Recorder()

    out.subscribe_to(stream, scheduler=scheduler)

    assert scheduler.scheduled >= 1
    assert out.values == ["A"]


def test_value_stream_replay_reads_the_value_when_the_scheduler_runs() -> None:
    pub = ValuePublisher("A")
    stream = pub.stream
    scheduler = virtual_scheduler()
    late = Recorder()
    late.subscribe_to(stream, scheduler=scheduler)
    stream._value = "B"  # changed without emitting, as a computed value would be

    scheduler.advance_by(timedelta(seconds=1))

    assert late.values == ["B"]


def test_value_stream_scheduled_replay_comes_first_and_is_not_duplicated() -> None:
    # Regression: a value emitted before the scheduled replay came first, then twice.
    pub = ValuePublisher("A")
    stream = pub.stream
    scheduler = virtual_scheduler()
    out = Recorder()
    out.subscribe_to(stream, scheduler=scheduler)

    pub.set("B")
    scheduler.advance_by(timedelta(seconds=1))

    assert out.values in (["A", "B"], ["B"])


def test_value_stream_disposed_before_the_scheduled_replay_gets_nothing() -> None:
    pub = ValuePublisher("A")
    stream = pub.stream
    scheduler = virtual_scheduler()
    out = Recorder()
    subscription = out.subscribe_to(stream, scheduler=scheduler)

    subscription.dispose()
    scheduler.advance_by(timedelta(seconds=1))
    pub.set("B")

    assert out.values == []
    assert stream.observer_count == 0


def test_value_stream_dispose_stops_delivery() -> None:
    pub = ValuePublisher(1)
    stream = pub.stream
    out = Recorder()
    subscription = out.subscribe_to(stream)

    subscription.dispose()
    pub.set(2)

    assert out.values == [1]
    assert stream.value == 2


def test_value_stream_set_emits_to_every_observer() -> None:
    pub = ValuePublisher(0)
    stream = pub.stream
    a, b = Recorder(), Recorder()
    a.subscribe_to(stream)
    pub.set(1)
    b.subscribe_to(stream)

    pub.set(2)

    assert a.values == [0, 1, 2]
    assert b.values == [1, 2]


def test_value_stream_completed_gives_no_replay_to_late_subscribers() -> None:
    pub = ValuePublisher("A")
    stream = pub.stream
    early = Recorder()
    early.subscribe_to(stream)

    pub.complete()
    late = Recorder()
    late.subscribe_to(stream)

    assert early.values == ["A"]
    assert early.completed == 1
    assert late.values == []
    assert late.completed == 1


def test_value_stream_works_with_reactivex_operators() -> None:
    pub = ValuePublisher(1)
    stream = pub.stream
    out = Recorder()
    out.subscribe_to(stream.pipe(ops.map(lambda v: v * 100), ops.distinct_until_changed()))

    pub.set(2)
    pub.set(2)
    pub.set(3)

    assert out.values == [100, 200, 300]


def test_value_stream_first_gives_the_current_value() -> None:
    pub = ValuePublisher("now")
    stream = pub.stream
    out = Recorder()

    out.subscribe_to(stream.pipe(ops.first()))

    assert out.values == ["now"]
    assert out.completed == 1
    assert stream.observer_count == 0


# == History ==================================================================================


def test_history_len_index_and_negative_index() -> None:
    history = History(["a", "b", "c"])

    assert len(history) == 3
    assert history[0] == "a"
    assert history[2] == "c"
    assert history[-1] == "c"
    assert history[-3] == "a"


@pytest.mark.parametrize("index", [3, -4, 100])
def test_history_index_out_of_range_raises_index_error(index: int) -> None:
    history = History(["a", "b", "c"])

    with pytest.raises(IndexError):
        history[index]


def test_history_window_over_shared_storage() -> None:
    storage = ["old", "a", "b", "c", "new"]
    history = History(storage, 1, 4)

    assert len(history) == 3
    assert history[0] == "a"
    assert history[-1] == "c"
    assert list(history) == ["a", "b", "c"]
    with pytest.raises(IndexError):
        history[3]


@pytest.mark.parametrize(
    "index", [slice(None), slice(1, None), slice(None, -1), slice(None, None, -1), slice(0, 9, 2)]
)
def test_history_slices_like_a_list(index: slice) -> None:
    storage = ["x", "a", "b", "c", "d", "y"]
    history = History(storage, 1, 5)

    assert history[index] == ["a", "b", "c", "d"][index]


def test_history_iterates_in_arrival_order() -> None:
    assert list(History([1, 2, 3])) == [1, 2, 3]
    assert list(History([])) == []


def test_history_equals_a_list_and_another_history() -> None:
    history = History(["a", "b"])

    assert history == ["a", "b"]
    assert ["a", "b"] == history  # noqa: SIM300 - the reflected comparison is the point
    assert history == History(["z", "a", "b"], 1)
    assert history != ["a"]
    assert history != ["a", "c"]
    assert history != "ab"
    assert History([]) == []


def test_history_is_unhashable_like_a_list() -> None:
    with pytest.raises(TypeError):
        hash(History([1]))


def test_history_view_does_not_change_when_the_storage_grows() -> None:
    storage = ["a", "b"]
    view = History(storage)

    storage.append("c")
    storage.extend(["d", "e"])

    assert len(view) == 2
    assert view == ["a", "b"]
    assert list(view) == ["a", "b"]
    assert view[-1] == "b"
    assert view[:] == ["a", "b"]
    with pytest.raises(IndexError):
        view[2]
    assert History(storage) == ["a", "b", "c", "d", "e"]


def test_history_repr_counts_messages() -> None:
    assert repr(History(["a", "b", "c"], 1)) == "History(2 messages)"


# == DerivedStream and ScheduledView ==========================================================


def test_derived_stream_value_is_always_read_from_its_getter() -> None:
    box = {"value": 1}
    pub = DerivedPublisher(lambda: box["value"], "derived")
    stream = pub.stream

    box["value"] = 2

    assert stream.value == 2


def test_derived_stream_replays_the_current_value_and_refresh_emits_changes_once() -> None:
    box = {"value": 1}
    pub = DerivedPublisher(lambda: box["value"], "derived")
    stream = pub.stream
    box["value"] = 2
    out = Recorder()
    out.subscribe_to(stream)

    box["value"] = 3
    pub.refresh()
    pub.refresh()  # unchanged: nothing more

    assert out.values == [2, 3]


def test_derived_stream_refresh_without_subscribers_does_not_read() -> None:
    reads: list[int] = []

    def getter() -> int:
        reads.append(1)
        return 7

    pub = DerivedPublisher(getter)
    reads.clear()

    pub.refresh()

    assert reads == []


def test_scheduled_view_delivers_the_latest_value_on_its_scheduler_in_order() -> None:
    source_pub = ValuePublisher("A")
    source = source_pub.stream
    scheduler = virtual_scheduler()
    view = ScheduledView(source, scheduler)
    out = Recorder()
    out.subscribe_to(view)

    assert out.values == []
    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A"]

    source_pub.set("B")
    source_pub.set("C")
    assert out.values == ["A"]
    assert view.value == "C"  # read from the source at once
    assert view.pending == 1  # one delivery waits, whatever came meanwhile
    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A", "C"]  # conflated: the latest value, once
    source_pub.set("D")
    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A", "C", "D"]


def test_scheduled_view_dispose_stops_delivery() -> None:
    source_pub = ValuePublisher("A")
    source = source_pub.stream
    scheduler = virtual_scheduler()
    out = Recorder()
    subscription = out.subscribe_to(ScheduledView(source, scheduler))
    scheduler.advance_by(timedelta(seconds=1))

    subscription.dispose()
    source_pub.set("B")
    scheduler.advance_by(timedelta(seconds=1))

    assert out.values == ["A"]
    assert source.observer_count == 0


# == Producer handles and serialized emission (issue 12, defect 3) ==========================


def test_only_the_publisher_can_emit() -> None:
    pub: Publisher[int] = Publisher("numbers")
    value_pub = ValuePublisher(0)
    derived_pub = DerivedPublisher(lambda: 0)

    for stream in (pub.stream, value_pub.stream, derived_pub.stream):
        assert not any(hasattr(stream, name) for name in ("emit", "set", "_emit", "_set"))
    assert value_pub.value == 0


def test_a_value_emitted_inside_a_round_is_delivered_after_it_to_everyone() -> None:
    pub: Publisher[int] = Publisher("numbers")
    first, second = Recorder(), Recorder()

    def reenter(value: int) -> None:
        first.on_next(value)
        if value == 1:
            pub.emit(2)  # while the others have not heard of 1 yet

    pub.stream.subscribe(reenter)
    second.subscribe_to(pub.stream)
    pub.emit(1)

    assert first.values == [1, 2]
    assert second.values == [1, 2]  # not [2, 1]


def test_every_subscriber_ends_on_the_value_whatever_they_set_inside_callbacks() -> None:
    pub = ValuePublisher("disconnected")
    stream = pub.stream
    before, after = Recorder(), Recorder()
    before.subscribe_to(stream)

    def disconnect_on_connected(state: str) -> None:
        if state == "connected":
            pub.set("disconnecting")
        elif state == "disconnecting":
            pub.set("disconnected")

    stream.subscribe(disconnect_on_connected)
    after.subscribe_to(stream)
    pub.set("connected")

    assert stream.value == "disconnected"
    expected = ["disconnected", "connected", "disconnecting", "disconnected"]
    assert before.values == expected
    assert after.values == expected
    assert after.values[-1] == stream.value


def test_a_stream_emitting_again_inside_a_round_keeps_order_across_many_reentries() -> None:
    pub: Publisher[int] = Publisher()
    seen: list[list[int]] = [[], [], []]

    def make(index: int) -> Any:
        def on_next(value: int) -> None:
            seen[index].append(value)
            if index == 0 and value < 5:
                pub.emit(value + 1)
                pub.emit(value + 100)

        return on_next

    for index in range(3):
        pub.stream.subscribe(make(index))
    pub.emit(0)

    assert seen[0] == seen[1] == seen[2]
    assert seen[0][:3] == [0, 1, 100]


def test_complete_inside_a_round_comes_after_the_value_being_delivered() -> None:
    pub: Publisher[str] = Publisher()
    later = Recorder()
    pub.stream.subscribe(lambda _v: pub.complete())
    later.subscribe_to(pub.stream)

    pub.emit("last")
    pub.emit("after the end")

    assert later.values == ["last"]
    assert later.completed == 1


def test_a_subscriber_raising_a_base_exception_does_not_wedge_the_stream() -> None:
    pub: Publisher[int] = Publisher()
    out = Recorder()

    def interrupt(value: int) -> None:
        if value == 1:
            raise KeyboardInterrupt

    pub.stream.subscribe(interrupt)
    out.subscribe_to(pub.stream)
    with pytest.raises(KeyboardInterrupt):
        pub.emit(1)
    pub.emit(2)

    assert out.values == [2]  # delivered at once, not held in a backlog forever


def test_a_raising_subscriber_in_a_later_round_is_unsubscribed() -> None:
    pub: Publisher[int] = Publisher("numbers")
    out = Recorder()
    calls: list[int] = []

    def reenter(value: int) -> None:
        if value == 1:
            pub.emit(2)

    def broken(value: int) -> None:
        calls.append(value)
        if value == 2:
            raise RuntimeError("subscriber bug")

    pub.stream.subscribe(reenter)
    pub.stream.subscribe(broken)
    out.subscribe_to(pub.stream)
    pub.emit(1)
    pub.emit(3)

    assert calls == [1, 2]
    assert out.values == [1, 2, 3]


def test_derived_publish_inside_a_round_leaves_everyone_on_the_current_value() -> None:
    box = {"history": ["a", "b"]}
    pub = DerivedPublisher(lambda: list(box["history"]), "messages")
    stream = pub.stream
    other = Recorder()

    def clear_when_two(history: list[str]) -> None:
        if len(history) == 2:
            box["history"] = []
            pub.publish()  # clear_messages() from a subscriber

    stream.subscribe(clear_when_two)
    other.subscribe_to(stream)

    assert other.values[-1] == [] == stream.value


# == ScheduledView conflation (issue 12, defect 4) =========================================


def test_scheduled_view_holds_at_most_one_pending_delivery_whatever_the_rate() -> None:
    source_pub = ValuePublisher(0)
    scheduler = virtual_scheduler()
    view = ScheduledView(source_pub.stream, scheduler)
    a, b = Recorder(), Recorder()
    a.subscribe_to(view)
    b.subscribe_to(view)

    for value in range(1, 10_001):
        source_pub.set(value)
        assert view.pending <= 1

    scheduler.advance_by(timedelta(seconds=1))
    assert a.values == b.values == [10_000]  # the replay was overtaken: the latest only
    assert view.pending == 0


def test_scheduled_view_a_late_subscriber_gets_the_current_value_first() -> None:
    source_pub = ValuePublisher("A")
    scheduler = virtual_scheduler()
    view = ScheduledView(source_pub.stream, scheduler)
    early, late = Recorder(), Recorder()
    early.subscribe_to(view)
    scheduler.advance_by(timedelta(seconds=1))

    late.subscribe_to(view)
    scheduler.advance_by(timedelta(seconds=1))
    assert early.values == ["A"]  # not told "A" again for the newcomer
    assert late.values == ["A"]

    source_pub.set("B")
    late_too = Recorder()
    late_too.subscribe_to(view)
    source_pub.set("C")  # overtakes the newcomer's first value: it gets "C" only
    scheduler.advance_by(timedelta(seconds=1))
    assert early.values == late.values == ["A", "C"]
    assert late_too.values == ["C"]


def test_scheduled_view_completes_after_the_last_value() -> None:
    source_pub = ValuePublisher("A")
    scheduler = virtual_scheduler()
    out = Recorder()
    out.subscribe_to(ScheduledView(source_pub.stream, scheduler))
    source_pub.set("B")
    source_pub.complete()

    scheduler.advance_by(timedelta(seconds=1))

    assert out.values == ["B"]
    assert out.completed == 1


def test_scheduled_view_stops_listening_when_nobody_subscribes() -> None:
    source_pub = ValuePublisher(0)
    scheduler = virtual_scheduler()
    view = ScheduledView(source_pub.stream, scheduler)
    subscription = Recorder().subscribe_to(view)
    scheduler.advance_by(timedelta(seconds=1))
    subscription.dispose()

    source_pub.set(1)
    source_pub.set(2)

    assert source_pub.stream.observer_count == 0
    assert view.pending == 0
    again = Recorder()
    again.subscribe_to(view)
    scheduler.advance_by(timedelta(seconds=1))
    assert again.values == [2]


def test_scheduled_view_on_a_slow_thread_keeps_one_pending_and_ends_on_the_value() -> None:
    scheduler = SlowThreadScheduler(delay=0.01)
    try:
        source_pub = ValuePublisher(0)
        view = ScheduledView(source_pub.stream, scheduler)
        seen: list[int] = []
        view.subscribe(seen.append)
        for value in range(1, 2_001):
            source_pub.set(value)
            assert scheduler.queued <= 1
        poll(lambda: bool(seen) and seen[-1] == 2_000)
        assert seen[-1] == view.value == 2_000
        assert scheduler.max_queued <= 1
        assert len(seen) < 2_000  # skipped values instead of queueing them
        assert seen == sorted(seen)
    finally:
        scheduler.stop()


def test_deliver_on_keeps_order_and_at_most_limit_values_waiting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pub: Publisher[int] = Publisher("errors")
    scheduler = virtual_scheduler()
    out = Recorder()
    out.subscribe_to(deliver_on(pub.stream, scheduler, limit=100, name="errors"))

    for value in range(1_000):
        pub.emit(value)
    pub.complete()
    with caplog.at_level(logging.WARNING, logger="nexus_reactive.streams"):
        scheduler.advance_by(timedelta(seconds=1))

    assert out.values == list(range(900, 1_000))  # the newest, in order
    assert out.completed == 1
    assert "the 900 oldest values" in caplog.text


def test_deliver_on_delivers_everything_when_the_subscriber_keeps_up() -> None:
    pub: Publisher[int] = Publisher()
    scheduler = virtual_scheduler()
    out = Recorder()
    out.subscribe_to(deliver_on(pub.stream, scheduler, limit=10))
    for value in range(50):
        pub.emit(value)
        scheduler.advance_by(timedelta(seconds=1))

    assert out.values == list(range(50))


def test_a_disposed_scheduler_ends_delivery_instead_of_raising() -> None:
    """The Solara hook disposes its delivery scheduler on close while the source may
    still emit: scheduling on it raises DisposedException, which must end delivery
    (nothing pending) rather than escape into the emitter and leave a delivery
    marked pending forever."""
    from reactivex.scheduler import EventLoopScheduler

    source_pub = ValuePublisher("A")
    scheduler = EventLoopScheduler()
    scheduler.dispose()
    view = ScheduledView(source_pub.stream, scheduler)
    out = Recorder()
    out.subscribe_to(view)
    source_pub.set("B")  # would raise DisposedException here before
    assert view.pending == 0
    source_pub.set("C")
    assert view.pending == 0 and out.values == []

    errors: list[Any] = []
    subject: reactivex.Subject[int] = reactivex.Subject()
    deliver_on(subject, scheduler).subscribe(on_next=errors.append)
    subject.on_next(1)  # no raise
    subject.on_next(2)
    assert errors == []
