"""The store's History view, DerivedStream and ScheduledView (its conflation too)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import reactivex

from nexus_reactive.derived import DerivedPublisher
from nexus_reactive.scheduled import ScheduledView, deliver_on
from nexus_reactive.store import History
from nexus_reactive.streams import Publisher, ValuePublisher

from .schedulers import SlowThreadScheduler
from .test_streams import Recorder, virtual_scheduler
from .waiting import poll

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
