"""The library's observables, Stream and ValueStream (the store's History view and the
derived views: test_streams_views.py; producer handles: test_streams_producers.py)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
import reactivex
from reactivex import operators as ops
from reactivex.scheduler import HistoricalScheduler, ImmediateScheduler

from nexus_reactive.streams import Publisher, ValuePublisher


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
