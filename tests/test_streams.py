"""The library's observables (Stream, ValueStream) and the store's History view."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import HistoricalScheduler, ImmediateScheduler

from nexus_reactive.store import History
from nexus_reactive.streams import DerivedStream, ScheduledView, Stream, ValueStream


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
    stream: Stream[int] = Stream("numbers")
    early, late = Recorder(), Recorder()
    early.subscribe_to(stream)
    stream._emit(1)

    late.subscribe_to(stream)
    stream._emit(2)

    assert early.values == [1, 2]
    assert late.values == [2]


def test_stream_emits_to_several_observers_in_subscription_order() -> None:
    stream: Stream[str] = Stream()
    order: list[str] = []
    stream.subscribe(lambda v: order.append(f"first:{v}"))
    stream.subscribe(lambda v: order.append(f"second:{v}"))
    stream.subscribe(lambda v: order.append(f"third:{v}"))

    stream._emit("x")

    assert order == ["first:x", "second:x", "third:x"]
    assert stream.observer_count == 3


def test_stream_dispose_stops_delivery_to_that_observer_only() -> None:
    stream: Stream[int] = Stream()
    kept, gone = Recorder(), Recorder()
    kept.subscribe_to(stream)
    subscription = gone.subscribe_to(stream)
    stream._emit(1)

    subscription.dispose()
    stream._emit(2)

    assert gone.values == [1]
    assert kept.values == [1, 2]
    assert stream.observer_count == 1


def test_stream_dispose_twice_is_harmless() -> None:
    stream: Stream[int] = Stream()
    subscription = stream.subscribe(lambda v: None)

    subscription.dispose()
    subscription.dispose()

    assert stream.observer_count == 0


def test_a_raising_observer_does_not_starve_the_others(caplog: pytest.LogCaptureFixture) -> None:
    stream: Stream[int] = Stream("numbers")
    before, after = Recorder(), Recorder()
    before.subscribe_to(stream)

    def broken(value: int) -> None:
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)
    after.subscribe_to(stream)

    with caplog.at_level(logging.ERROR, logger="nexus_reactive.streams"):
        stream._emit(1)
        stream._emit(2)

    assert before.values == [1, 2]
    assert after.values == [1, 2]
    assert "a subscriber of numbers raised" in caplog.text


def test_a_raising_observer_is_unsubscribed() -> None:
    # Regression: `o.on_next is sink` never matched (a new bound method per access).
    stream: Stream[int] = Stream("numbers")
    calls: list[int] = []
    other = Recorder()

    def broken(value: int) -> None:
        calls.append(value)
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)
    other.subscribe_to(stream)

    stream._emit(1)
    stream._emit(2)

    assert calls == [1]
    assert stream.observer_count == 1
    assert other.values == [1, 2]


def test_a_raising_observer_is_unsubscribed_even_if_another_left_in_the_same_emit() -> None:
    stream: Stream[int] = Stream("numbers")
    first = Recorder()
    first.subscribe_to(stream.pipe(ops.take(1)))  # unsubscribes itself on its first value
    calls: list[int] = []

    def broken(value: int) -> None:
        calls.append(value)
        raise RuntimeError("subscriber bug")

    stream.subscribe(broken)

    stream._emit(1)
    stream._emit(2)

    assert first.values == [1]
    assert calls == [1]


def test_complete_completes_current_observers_and_releases_them() -> None:
    stream: Stream[int] = Stream()
    a, b = Recorder(), Recorder()
    a.subscribe_to(stream)
    b.subscribe_to(stream)

    stream._complete()
    stream._emit(1)
    stream._complete()

    assert (a.completed, b.completed) == (1, 1)
    assert a.values == b.values == []
    assert stream.observer_count == 0


def test_late_subscriber_to_a_completed_stream_completes_at_once() -> None:
    stream: Stream[int] = Stream()
    stream._complete()
    late = Recorder()

    late.subscribe_to(stream)

    assert late.completed == 1
    assert late.values == []
    assert stream.observer_count == 0


def test_an_observer_raising_on_completion_does_not_stop_the_others() -> None:
    stream: Stream[int] = Stream()

    def broken() -> None:
        raise RuntimeError("completion bug")

    stream.subscribe(on_completed=broken)
    other = Recorder()
    other.subscribe_to(stream)

    stream._complete()

    assert other.completed == 1


def test_stream_works_with_reactivex_operators() -> None:
    stream: Stream[int] = Stream()
    out = Recorder()
    out.subscribe_to(stream.pipe(ops.filter(lambda v: v % 2 == 1), ops.map(lambda v: v * 10)))

    for value in range(5):
        stream._emit(value)
    stream._complete()

    assert out.values == [10, 30]
    assert out.completed == 1


# == ValueStream ==============================================================================


def test_value_stream_holds_its_current_value() -> None:
    stream = ValueStream("initial")

    assert stream.value == "initial"
    stream._set("next")
    assert stream.value == "next"


def test_value_stream_replays_the_current_value_synchronously_inside_subscribe() -> None:
    stream = ValueStream(0)
    stream._set(5)
    out = Recorder()

    out.subscribe_to(stream)

    assert out.values == [5]  # already there when subscribe returned
    stream._set(6)
    assert out.values == [5, 6]


def test_value_stream_replays_through_the_given_scheduler() -> None:
    stream = ValueStream("A")
    scheduler = virtual_scheduler()
    out = Recorder()

    out.subscribe_to(stream, scheduler=scheduler)
    assert out.values == []  # not delivered until the scheduler runs

    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A"]


def test_value_stream_replays_through_an_immediate_scheduler() -> None:
    stream = ValueStream("A")
    scheduler = CountingImmediateScheduler()
    out = Recorder()

    out.subscribe_to(stream, scheduler=scheduler)

    assert scheduler.scheduled >= 1
    assert out.values == ["A"]


def test_value_stream_replay_reads_the_value_when_the_scheduler_runs() -> None:
    stream = ValueStream("A")
    scheduler = virtual_scheduler()
    late = Recorder()
    late.subscribe_to(stream, scheduler=scheduler)
    stream._value = "B"  # changed without emitting, as a computed value would be

    scheduler.advance_by(timedelta(seconds=1))

    assert late.values == ["B"]


def test_value_stream_scheduled_replay_comes_first_and_is_not_duplicated() -> None:
    # Regression: a value emitted before the scheduled replay came first, then twice.
    stream = ValueStream("A")
    scheduler = virtual_scheduler()
    out = Recorder()
    out.subscribe_to(stream, scheduler=scheduler)

    stream._set("B")
    scheduler.advance_by(timedelta(seconds=1))

    assert out.values in (["A", "B"], ["B"])


def test_value_stream_disposed_before_the_scheduled_replay_gets_nothing() -> None:
    stream = ValueStream("A")
    scheduler = virtual_scheduler()
    out = Recorder()
    subscription = out.subscribe_to(stream, scheduler=scheduler)

    subscription.dispose()
    scheduler.advance_by(timedelta(seconds=1))
    stream._set("B")

    assert out.values == []
    assert stream.observer_count == 0


def test_value_stream_dispose_stops_delivery() -> None:
    stream = ValueStream(1)
    out = Recorder()
    subscription = out.subscribe_to(stream)

    subscription.dispose()
    stream._set(2)

    assert out.values == [1]
    assert stream.value == 2


def test_value_stream_set_emits_to_every_observer() -> None:
    stream = ValueStream(0)
    a, b = Recorder(), Recorder()
    a.subscribe_to(stream)
    stream._set(1)
    b.subscribe_to(stream)

    stream._set(2)

    assert a.values == [0, 1, 2]
    assert b.values == [1, 2]


def test_value_stream_completed_gives_no_replay_to_late_subscribers() -> None:
    stream = ValueStream("A")
    early = Recorder()
    early.subscribe_to(stream)

    stream._complete()
    late = Recorder()
    late.subscribe_to(stream)

    assert early.values == ["A"]
    assert early.completed == 1
    assert late.values == []
    assert late.completed == 1


def test_value_stream_works_with_reactivex_operators() -> None:
    stream = ValueStream(1)
    out = Recorder()
    out.subscribe_to(stream.pipe(ops.map(lambda v: v * 100), ops.distinct_until_changed()))

    stream._set(2)
    stream._set(2)
    stream._set(3)

    assert out.values == [100, 200, 300]


def test_value_stream_first_gives_the_current_value() -> None:
    stream = ValueStream("now")
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
    stream = DerivedStream(lambda: box["value"], "derived")

    box["value"] = 2

    assert stream.value == 2


def test_derived_stream_replays_the_current_value_and_refresh_emits_changes_once() -> None:
    box = {"value": 1}
    stream = DerivedStream(lambda: box["value"], "derived")
    box["value"] = 2
    out = Recorder()
    out.subscribe_to(stream)

    box["value"] = 3
    stream._refresh()
    stream._refresh()  # unchanged: nothing more

    assert out.values == [2, 3]


def test_derived_stream_refresh_without_subscribers_does_not_read() -> None:
    reads: list[int] = []

    def getter() -> int:
        reads.append(1)
        return 7

    stream = DerivedStream(getter)
    reads.clear()

    stream._refresh()

    assert reads == []


def test_scheduled_view_delivers_everything_on_its_scheduler_in_order() -> None:
    source = ValueStream("A")
    scheduler = virtual_scheduler()
    view = ScheduledView(source, scheduler)
    out = Recorder()
    out.subscribe_to(view)

    assert out.values == []
    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A"]

    source._set("B")
    source._set("C")
    assert out.values == ["A"]
    assert view.value == "C"  # read from the source at once
    scheduler.advance_by(timedelta(seconds=1))
    assert out.values == ["A", "B", "C"]


def test_scheduled_view_dispose_stops_delivery() -> None:
    source = ValueStream("A")
    scheduler = virtual_scheduler()
    out = Recorder()
    subscription = out.subscribe_to(ScheduledView(source, scheduler))
    scheduler.advance_by(timedelta(seconds=1))

    subscription.dispose()
    source._set("B")
    scheduler.advance_by(timedelta(seconds=1))

    assert out.values == ["A"]
    assert source.observer_count == 0
